"""``POST /imaging/{id}``: a real image model (trained here on MedMNIST-format squares), deployed, served by uvicorn
on loopback with JWT auth, and real DICOM files from pydicom's test data.

References from outside: pydicom's test files and pydicom itself for the DICOM header values, the model's own
``predict_bundle`` for the probabilities, Pillow for the PNGs, FHIR R4 (fhir.resources R4B) for the Bundle.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("monai")

import pydicom
from cds_requests import needs_physionet
from PIL import Image
from pydicom.data import get_testdata_file

from imaging_squares import write_squares_npz
from medml.config import Settings
from medml.service.app import create_app
from medml.service.audit import verify
from medml.service.config import ServiceConfig, TrustedIssuer
from medml.service.deploy import deploy, deployments

MODEL = "squares"
SERVICE = "squares-dx"
ISS = "https://ehr.example.org/"
KID = "test-key"
CT = get_testdata_file("CT_small.dcm")  # 128 x 128, no window in the file
MR = get_testdata_file("MR_small.dcm")  # 64 x 64, window 600/1600
MULTIFRAME = get_testdata_file("rtdose.dcm")  # 15 frames of 10 x 10
TRUNCATED = get_testdata_file("MR_truncated.dcm")  # PixelData shorter than Rows x Columns
RGB = get_testdata_file("SC_rgb_small_odd.dcm")  # 3 x 3 RGB
NO_PIXELS = get_testdata_file("rtplan.dcm")  # a plan, not an image
DICOM = {"Content-Type": "application/dicom"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings whose registry holds a small image model of the squares (a few seconds)."""
    from medml.pipelines.imaging import ImageWorkflowConfig, train_images

    root = tmp_path_factory.mktemp("imaging-service")
    settings = Settings(home=root / "home", data_root=root)
    config = ImageWorkflowConfig(batch_size=32, n_boot=50, name=MODEL, widths=(8, 16, 32, 64), explain_images=4)
    data = write_squares_npz(root / "squares.npz", sizes=(80, 30, 30))
    train_images(data, config, settings, epochs=2, budget_minutes=None)
    return settings


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """An EHR's ES384 key and its public JWK Set file."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(json.dumps({"keys": [{**public, "kid": KID, "alg": "ES384", "use": "sig"}]}))
    return key, path


@pytest.fixture()
def config(tmp_path: Path, signer: tuple[Any, Path]) -> ServiceConfig:
    return ServiceConfig(
        home=tmp_path / "service",
        base_url="https://cds.example.org",
        pages=False,
        issuers=(TrustedIssuer(ISS, str(signer[1])),),
        max_dicom_bytes=200_000,
    )


def token(signer: tuple[Any, Path], aud: str, **changes: Any) -> str:
    import jwt

    now = int(time.time())
    claims = {
        "iss": ISS,
        "sub": "radiology-viewer",
        "aud": aud,
        "exp": now + 300,
        "iat": now,
        "jti": str(uuid.uuid4()),
        **changes,
    }
    return str(jwt.encode(claims, signer[0], algorithm="ES384", headers={"kid": KID}))


@pytest.fixture()
def client(home: Settings, config: ServiceConfig, serve: Callable[[Any], str]) -> Iterator[httpx.Client]:
    deploy(home, config, MODEL, service_id=SERVICE)
    with httpx.Client(base_url=serve(create_app(home, config)), timeout=60) as c:
        yield c


def post(
    client: httpx.Client,
    signer: tuple[Any, Path],
    config: ServiceConfig,
    path: str | Path | bytes,
    *,
    params: dict[str, str] | None = None,
    service: str = SERVICE,
    headers: dict[str, str] = DICOM,
) -> Any:
    body = path if isinstance(path, bytes) else Path(path).read_bytes()
    auth = {"Authorization": f"Bearer {token(signer, config.imaging_url(service))}"}
    return client.post(f"/imaging/{service}", content=body, params=params, headers={**headers, **auth})


def audit_records(config: ServiceConfig) -> list[dict[str, Any]]:
    return [json.loads(line) for line in config.audit_path.read_text().splitlines()]


def prepared(path: str | Path, frame: int | None = None) -> np.ndarray:
    """The pixels as the endpoint must prepare them, as the DICOM folder loader prepares training images: read_dicom,
    then Pillow bilinear to 28 x 28."""
    from medml.data.images import read_dicom

    px = read_dicom(path, frame=frame).pixels[..., 0]
    small = np.asarray(Image.fromarray(px.astype(np.float32)).resize((28, 28), Image.Resampling.BILINEAR))
    return np.clip(small, 0, 1)[..., None].astype(np.float32)


def test_a_dicom_file_gets_the_models_probability_heat_map_and_evaluation(
    client: httpx.Client, signer: tuple[Any, Path], config: ServiceConfig, home: Settings
) -> None:
    from medml.models.imaging import predict_bundle
    from medml.registry import load_bundle

    bundle = load_bundle(MODEL, home)
    for path in (CT, MR):
        r = post(client, signer, config, path)
        assert r.status_code == 200, r.text
        body = r.json()
        ds = pydicom.dcmread(path)
        assert body["model"] == f"{MODEL}@1" and body["task"] == "binary"
        (p,) = body["probabilities"].values()
        assert list(body["probabilities"]) == [bundle.metadata.target]
        assert p == pytest.approx(float(predict_bundle(bundle, prepared(path)[None])[0]), abs=1e-6)
        assert body["dicom"] == {"study_instance_uid": ds.StudyInstanceUID, "patient_id": ds.PatientID}
        prep = body["preparation"]
        assert (prep["rows"], prep["columns"], prep["frame"]) == (ds.Rows, ds.Columns, None)
        assert prep["resized"]["from"] == [ds.Rows, ds.Columns] and prep["resized"]["to"] == [28, 28]
        ev = body["evaluation"]
        md = bundle.metadata
        assert ev["auroc"] == [md.metrics["auroc"], md.metrics["auroc_low"], md.metrics["auroc_high"]]
        assert ev["n"] == 30 and ev["population"] == md.population
        assert ev["report"] == f"medml image report {MODEL}@1"
        assert body["intended_use"] == md.intended_use and "not a diagnosis" in body["decision_support"]
        assert body["authenticated"] is True
        heat = body["heatmap"]
        with Image.open(io.BytesIO(base64.b64decode(heat["map_png"]))) as im:
            assert im.format == "PNG" and im.size == (28, 28) and im.mode == "L"
        with Image.open(io.BytesIO(base64.b64decode(heat["overlay_png"]))) as im:
            assert im.format == "PNG" and min(im.size) >= 100
    assert prep["window"] == "file 600/1600"  # MR_small's own window
    records = audit_records(config)
    assert [r["status"] for r in records] == [200, 200] and all(r["event"] == "imaging" for r in records)
    assert records[1]["input_sha256"] == hashlib.sha256(Path(MR).read_bytes()).hexdigest()
    assert records[1]["model"] == f"{MODEL}@1" and records[1]["caller"]["iss"] == ISS
    assert records[1]["patient"] == pydicom.dcmread(MR).PatientID
    assert verify(config.audit_path).ok
    assert "pixels" not in config.audit_path.read_text() and "png" not in config.audit_path.read_text()


def test_a_multi_frame_file_is_scored_on_the_frame_asked_for(
    client: httpx.Client, signer: tuple[Any, Path], config: ServiceConfig, home: Settings
) -> None:
    from medml.models.imaging import predict_bundle
    from medml.registry import load_bundle

    r = post(client, signer, config, MULTIFRAME, params={"frame": "7"})
    assert r.status_code == 200, r.text
    (p,) = r.json()["probabilities"].values()
    want = predict_bundle(load_bundle(MODEL, home), prepared(MULTIFRAME, frame=7)[None])[0]
    assert p == pytest.approx(float(want), abs=1e-6)
    assert r.json()["preparation"]["frame"] == 7 and r.json()["preparation"]["frames"] == 15


def test_format_fhir_is_an_r4_bundle_whose_report_references_the_dicom_study(
    client: httpx.Client, signer: tuple[Any, Path], config: ServiceConfig
) -> None:
    pytest.importorskip("fhir.resources")
    from fhir.resources.R4B.bundle import Bundle

    r = post(client, signer, config, CT, params={"format": "fhir"})
    assert r.status_code == 200, r.text
    doc = r.json()
    Bundle.model_validate(doc)
    (entry,) = doc["entry"]
    report = entry["resource"]
    assert report["resourceType"] == "DiagnosticReport"
    uid = pydicom.dcmread(CT).StudyInstanceUID
    assert report["imagingStudy"][0]["identifier"] == {"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}
    assert report["presentedForm"][0]["contentType"] == "image/png"
    assert "not a diagnosis" in report["conclusion"]


def test_bad_input_gets_a_clear_error_and_every_refusal_is_audited(
    client: httpx.Client, signer: tuple[Any, Path], config: ServiceConfig
) -> None:
    cases: list[tuple[str, Any, dict[str, Any], int, tuple[str, ...]]] = [
        ("not DICOM", b"this is not an image" * 20, {}, 400, ("not a readable DICOM file",)),
        ("truncated pixel data", TRUNCATED, {}, 400, ("pixel data", "the uploaded file")),
        ("no pixels", NO_PIXELS, {}, 400, ("no PixelData",)),
        ("multi-frame without frame", MULTIFRAME, {}, 400, ("?frame=N", "15 frames")),
        ("frame out of range", MULTIFRAME, {"params": {"frame": "15"}}, 400, ("out of range", "0 to 14")),
        ("frame not a number", CT, {"params": {"frame": "one"}}, 400, ("?frame=N",)),
        ("unknown format", CT, {"params": {"format": "xml"}}, 400, ("format=fhir",)),
        ("RGB for a grayscale model", RGB, {}, 422, ("3 channel(s)", "takes 1")),
        ("not application/dicom", CT, {"headers": {"Content-Type": "image/png"}}, 415, ("application/dicom",)),
        ("unknown service", CT, {"service": "nothing-here"}, 404, ("GET /imaging",)),
    ]
    for what, body, options, status, words in cases:
        r = post(client, signer, config, body, **options)
        assert r.status_code == status, (what, r.text)
        error = r.json()["error"]
        assert all(w in error for w in words), (what, error)
        assert "Traceback" not in r.text and "/tmp" not in error, what
    records = audit_records(config)
    assert [r["status"] for r in records] == [c[3] for c in cases]
    assert all(r["error"] for r in records)
    assert records[0]["input_sha256"] == hashlib.sha256(b"this is not an image" * 20).hexdigest()
    assert verify(config.audit_path).ok


def test_calls_need_the_ehrs_jwt_for_this_endpoint_and_a_refusal_is_a_bare_401(
    client: httpx.Client, signer: tuple[Any, Path], config: ServiceConfig
) -> None:
    body = Path(CT).read_bytes()
    refused = {
        "no token": None,
        "a token for a CDS hook": token(signer, config.service_url(SERVICE)),
        "expired": token(signer, config.imaging_url(SERVICE), exp=int(time.time()) - 3600),
    }
    for what, tok in refused.items():
        headers = {**DICOM, **({"Authorization": f"Bearer {tok}"} if tok else {})}
        r = client.post(f"/imaging/{SERVICE}", content=body, headers=headers)
        assert r.status_code == 401 and r.content == b"", what
        assert r.headers["www-authenticate"].startswith("Bearer"), what
    records = audit_records(config)
    assert [r["status"] for r in records] == [401] * len(refused) and verify(config.audit_path).ok
    assert records[0]["input_sha256"] is None  # refused before the body was read


def test_a_file_over_max_dicom_bytes_is_413_and_hook_bodies_keep_their_limit(
    client: httpx.Client, signer: tuple[Any, Path], config: ServiceConfig
) -> None:
    big = Path(CT).read_bytes() + b"\0" * config.max_dicom_bytes
    r = post(client, signer, config, big)
    assert r.status_code == 413 and "max_dicom_bytes" in r.json()["error"]
    assert post(client, signer, config, CT).status_code == 200  # 39 kB: over nothing
    hook = client.post(
        f"/cds-services/{SERVICE}",
        content=b"{}" + b" " * config.max_body_bytes,
        headers={"Content-Type": "application/json"},
    )
    assert hook.status_code == 413 and "max_body_bytes" in hook.json()["error"]


def test_an_image_service_is_not_a_hook(client: httpx.Client, config: ServiceConfig) -> None:
    assert client.get("/cds-services").json()["services"] == []
    r = client.post(f"/cds-services/{SERVICE}", json={"hook": "patient-view"})
    assert r.status_code == 404
    (listed,) = client.get("/imaging").json()["services"]
    assert listed["id"] == SERVICE and listed["model"] == f"{MODEL}@1"
    assert listed["url"] == config.imaging_url(SERVICE) and listed["input"]["image_size"] == [28, 28]


@needs_physionet
def test_a_hook_and_an_image_service_side_by_side_each_404_on_the_others_route(
    home: Settings, model_home: Settings, config: ServiceConfig, serve: Callable[[Any], str], signer: tuple[Any, Path]
) -> None:
    from medml.registry.store import bundle_dir

    hook = "physionet-2012-lgbm"
    shutil.copytree(bundle_dir(model_home, hook, 1), bundle_dir(home, hook, 1), dirs_exist_ok=True)
    deploy(home, config, hook)
    deploy(home, config, MODEL, service_id=SERVICE)
    assert {sid: d.kind for sid, d in deployments(config).items()} == {hook: "cds-hook", SERVICE: "image"}
    with httpx.Client(base_url=serve(create_app(home, config)), timeout=30) as c:
        assert [s["id"] for s in c.get("/cds-services").json()["services"]] == [hook]
        assert [s["id"] for s in c.get("/imaging").json()["services"]] == [SERVICE]
        r = post(c, signer, config, CT, service=hook)
        assert r.status_code == 404 and "not an image service" in r.json()["error"]
        assert c.post(f"/cds-services/{SERVICE}", json={}).status_code == 404


def test_a_deployment_stored_before_image_services_loads_as_a_hook() -> None:
    from medml.fhir.tasks import physionet_serving
    from medml.service.deploy import Deployment

    spec = physionet_serving(48)
    assert spec is not None
    old = {
        "service_id": "icu",
        "model": "m@1",
        "title": "t",
        "description": "d",
        "thresholds": [0.1, 0.3],
        "thresholds_note": "n",
        "spec": spec.to_dict(),
        "evaluation": {},
        "intended_use": "u",
        "risk_assessment": "suggestion",
        "hook": "patient-view",
        "deployed": "2026-01-01T00:00:00+00:00",
    }
    dep = Deployment.from_dict(old)
    assert dep.kind == "cds-hook" and dep.is_hook


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEDML_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "medml.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_medml_deploy_of_an_image_model_lists_it_as_an_image_service(home: Settings) -> None:
    r = cli(home.home, "deploy", MODEL, "--id", "squares-cli")
    assert r.returncode == 0, r.stderr
    assert "image service" in r.stdout and "/imaging/squares-cli" in r.stdout
    listed = cli(home.home, "deployments")
    row = next(line for line in listed.stdout.splitlines() if "squares-cli" in line)
    assert "image" in row and f"{MODEL}@1" in row


def test_card_options_are_refused_for_an_image_model(home: Settings, config: ServiceConfig) -> None:
    from medml.errors import ConfigError

    for options in ({"thresholds": (0.2, 0.5)}, {"risk_assessment": "system-action"}):
        with pytest.raises(ConfigError, match="is an image model"):
            deploy(home, config, MODEL, **options)  # type: ignore[arg-type]
    assert deployments(config) == {}


def test_the_service_imports_without_torch() -> None:
    code = (
        "import sys; import medml.service.app, medml.service.routers.images, medml.service.deploy; "
        "sys.exit(1 if {'torch', 'monai'} & set(sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_the_model_card_page_shows_the_image_models_report_and_its_image_service(
    home: Settings, signer: tuple[Any, Path], tmp_path: Path, serve: Callable[[Any], str]
) -> None:
    config = ServiceConfig(
        home=tmp_path / "service",
        base_url="https://cds.example.org",
        pages=True,
        issuers=(TrustedIssuer(ISS, str(signer[1])),),
    )
    deploy(home, config, MODEL, service_id=SERVICE)
    reader = token(signer, "https://cds.example.org", scope="user/Device.r")  # off loopback: a token (issue 18)
    with httpx.Client(base_url=serve(create_app(home, config)), timeout=60) as c:
        assert c.get(f"/models/{MODEL}/1").status_code == 401
        r = c.get(f"/models/{MODEL}/1", headers={"Authorization": f"Bearer {reader}"})
    assert r.status_code == 200, r.text
    assert "img-src data:" in r.headers["content-security-policy"]  # the report's heat-map grid is a data: PNG
    assert f"image service <code>{SERVICE}</code>" in r.text and f"/imaging/{SERVICE}" in r.text
    assert "Where the network looked" in r.text and "Decision support" in r.text
