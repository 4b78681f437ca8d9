"""FHIR operations, one module per $operation (http://hl7.org/fhir/R4/operations.html)."""
