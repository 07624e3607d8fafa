"""The FHIR resource types a ViewDefinition's ``resource`` may name: the resource-types value set of R4, R4B and R5.

The specification binds ``ViewDefinition.resource`` to http://hl7.org/fhir/ValueSet/resource-types, and the suite's
test files declare FHIR 5.0.0 and 4.0.1. R4's types come from :mod:`medml.fhir._r4types`; the types R4B (4.3.0) and
R5 (5.0.0) added are listed here, read from the resource models that fhir.resources 8.3 ships for those versions.
"""

from __future__ import annotations

from medml.fhir._r4types import R4_RESOURCE_TYPES

ADDED_AFTER_R4: frozenset[str] = frozenset(
    {
        "ActorDefinition",
        "AdministrableProductDefinition",
        "ArtifactAssessment",
        "BiologicallyDerivedProductDispense",
        "Citation",
        "ClinicalUseDefinition",
        "ConditionDefinition",
        "DeviceAssociation",
        "DeviceDispense",
        "DeviceUsage",
        "EncounterHistory",
        "EvidenceReport",
        "FormularyItem",
        "GenomicStudy",
        "ImagingSelection",
        "Ingredient",
        "InventoryItem",
        "InventoryReport",
        "ManufacturedItemDefinition",
        "MedicinalProductDefinition",
        "NutritionIntake",
        "NutritionProduct",
        "PackagedProductDefinition",
        "Permission",
        "RegulatedAuthorization",
        "RequestOrchestration",
        "Requirements",
        "SubscriptionStatus",
        "SubscriptionTopic",
        "SubstanceDefinition",
        "TestPlan",
        "Transport",
    }
)

RESOURCE_TYPES: frozenset[str] = R4_RESOURCE_TYPES | ADDED_AFTER_R4
