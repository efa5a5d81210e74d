"""records: the patient chart (EHR and PHR entries as FHIR R4 resources), enforced reads,
break-the-glass, and crypto-shredding erasure. Contract: DESIGN.md, "records (8001)"."""
