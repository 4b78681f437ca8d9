"""The URLs and codes the appointment services put on FHIR resources.

Extensions (http://hl7.org/fhir/R4/extensibility.html) and local code systems live under
:data:`ehr.codesystems.CANONICAL_BASE`. Where R4 has a code system, it is used: Appointment
status (http://hl7.org/fhir/R4/valueset-appointmentstatus.html), Slot status
(http://hl7.org/fhir/R4/valueset-slotstatus.html), v2-0276 appointment reason codes for the
visit type, LOINC and UCUM for vital signs.
"""

from __future__ import annotations

from ehr.codesystems import CANONICAL_BASE

__all__ = [
    "ACTIVE_STATUSES",
    "APPOINTMENTS_CS",
    "AVAILABILITY_EXT",
    "BOOKING_EXT",
    "BOOKING_POLICY_EXT",
    "CHECKIN_CHANNEL_EXT",
    "CLIENT_WRITE_SYSTEM",
    "WITNESS_SYSTEM",
    "HOLD_EXT",
    "OCCUPYING_STATUSES",
    "QUEUE_NUMBER_EXT",
    "SESSION_NAMES",
    "SLOT_NUMBER_EXT",
    "SLOT_SESSION_EXT",
    "V2_0276",
    "VISIT_TYPE_SYSTEM",
]

_SD = f"{CANONICAL_BASE}/StructureDefinition"

#: Schedule extension: the recurring availability rules (see :mod:`appointments.availability`)
AVAILABILITY_EXT = f"{_SD}/schedule-availability"
#: Basic extension: a hospital's booking policy (see :mod:`appointments.policy`)
BOOKING_POLICY_EXT = f"{_SD}/booking-policy"
#: Slot extension (valueInteger): the number of a numbered slot in its session (第 N 号)
SLOT_NUMBER_EXT = f"{_SD}/slot-number"
#: Slot extension (valueCode): the clinic session the slot belongs to (am | pm | eve)
SLOT_SESSION_EXT = f"{_SD}/slot-session"
#: Slot and Appointment extension: a tentative hold (appointment, patient, expires)
HOLD_EXT = f"{_SD}/slot-hold"
#: Appointment extension: booking facts (organization, department, bookedBy, slotNumber, session,
#: cancelBefore: until when a citizen may cancel or move it online, by the policy of the booking)
BOOKING_EXT = f"{_SD}/appointment-booking"
#: Encounter and Appointment extension (valueInteger): the queue number given at check-in
QUEUE_NUMBER_EXT = f"{_SD}/queue-number"

#: Encounter extension (valueCode): where the patient checked in (counter | kiosk | phone | card)
CHECKIN_CHANNEL_EXT = f"{_SD}/checkin-channel"

#: local code system of the appointment services (booking-policy, ...)
APPOINTMENTS_CS = f"{CANONICAL_BASE}/CodeSystem/appointments"
#: local visit types: general (普通号), expert (专家号), special-needs (特需号), follow-up (复诊)
VISIT_TYPE_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/visit-type"
#: http://terminology.hl7.org/CodeSystem/v2-0276 (Appointment reason codes)
V2_0276 = "http://terminology.hl7.org/CodeSystem/v2-0276"
#: default identifier system of client-generated write identifiers (nurse station, workstation)
CLIENT_WRITE_SYSTEM = f"{CANONICAL_BASE}/sid/client-write"
#: the id (jti) of the second nurse's signature, kept on the MedicationAdministration it signed
#: (a signature is used once)
WITNESS_SYSTEM = f"{CANONICAL_BASE}/sid/witness-assertion"

SESSION_NAMES = {"am": "上午", "pm": "下午", "eve": "夜间"}

#: Appointment statuses that hold a slot
OCCUPYING_STATUSES = frozenset(
    {"pending", "booked", "arrived", "checked-in", "fulfilled", "noshow"}
)
#: Appointment statuses that count as an active booking (limits)
ACTIVE_STATUSES = frozenset({"pending", "booked", "arrived", "checked-in"})
