"""HL7 FHIR R4: ledger facts as FHIR resources (fhir.resources R4B models)."""
