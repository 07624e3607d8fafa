"""Model bundles on disk and in MLflow: every trained model saved as a versioned, verified ModelBundle.

``register`` saves a bundle under ``MEDML_HOME/models/<name>/<version>/`` and records it in MLflow with the
same version number; ``load_bundle("name@3")`` verifies every file's hash before unpickling. Importing this
package does not import mlflow.
"""

from medml.registry.bundle import BundleMetadata, ModelBundle, code_version
from medml.registry.store import list_models, load_bundle, resolve, save_bundle, show_model
from medml.registry.tracking import register

__all__ = [
    "BundleMetadata",
    "ModelBundle",
    "code_version",
    "list_models",
    "load_bundle",
    "register",
    "resolve",
    "save_bundle",
    "show_model",
]
