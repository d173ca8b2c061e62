"""De-identified research exports: the pure pipeline (records, deid, kanon, writers, codebook,
readme, fhir) and the service around it (jobs table, database source, background runner, API,
``interlude export``)."""
