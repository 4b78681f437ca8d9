"""FHIR Bulk Data Access 2.0 (https://hl7.org/fhir/uv/bulkdata/STU2/) as a store-level library:
``$export`` at system, Patient and Group level and an ndjson ``$import``, run as persistent,
resumable jobs by a :class:`BulkWorker`. No HTTP here: the REST layer maps the kick-off,
status, delete and file requests onto these functions.

    job_id = kick_off(store, "group", group_id="g1", types="Patient,Observation")
    worker = BulkWorker(store); worker.start()          # or worker.run_pending() in tests
    st = status(store, job_id, base_url="https://x/fhir/bulk-files")
    if st.in_progress: ...  # 202, X-Progress: st.progress
    else: ...               # 200, st.manifest
    with open_file(store, job_id, "Patient.1.ndjson") as fh: ...
    cancel(store, job_id)
"""

from ehr.bulk.export import kick_off
from ehr.bulk.import_ import ImportInput, kick_off_import, parse_import_parameters
from ehr.bulk.jobs import JobStatus, cancel, open_file, purge, status
from ehr.bulk.worker import BulkWorker

__all__ = [
    "BulkWorker",
    "ImportInput",
    "JobStatus",
    "cancel",
    "kick_off",
    "kick_off_import",
    "open_file",
    "parse_import_parameters",
    "purge",
    "status",
]
