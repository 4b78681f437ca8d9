"""Appointment booking, check-in and queue, and the nurse-station and doctor-workstation services
of the exchange, on top of the ``ehr`` store (FHIR R4 Schedule, Slot, Appointment, Encounter,
Observation, MedicationAdministration, Communication).

``install(store)`` returns the :class:`Appointments` services and registers the booking rules as
a store WriteHook, so plain FHIR writes obey them. Every service function takes the services and
the acting user (:class:`Actor`) explicitly. ``appointments.http.router()`` is the thin FastAPI
adapter that ``fhir_api`` mounts.
"""

from .actors import Actor, acting_as, current_actor
from .availability import (
    Availability,
    Closure,
    Eligibility,
    ExtraDay,
    Session,
    availability_extension,
    availability_of,
)
from .booking import book, cancel, hold, no_show, release_expired_holds, reschedule
from .checkin import (
    CheckIn,
    QueueEntry,
    QueueView,
    call_next,
    check_in,
    check_in_by_identifier,
    finish_visit,
    queue,
)
from .find import FindRequest, FreeSlot, find_slots
from .notify import LogSender, Message, Sender, SmsGateway, SmsSender, WeChatGateway, WeChatSender
from .nursing import administer_medication, identify_patient, record_vital_signs, ward_worklist
from .policy import DEFAULT_POLICY, BookingPolicy, load_policy, policy_resource, save_policy
from .service import Appointments, install
from .sessions import SessionCancellation, cancel_session
from .slots import SlotReport, generate_slots, roll_window
from .waitlist import join_waitlist
from .workstation import Order, Series, clinic_list, place_orders, results_over_time, write_note

__all__ = [
    "DEFAULT_POLICY",
    "Actor",
    "Appointments",
    "Availability",
    "BookingPolicy",
    "CheckIn",
    "Closure",
    "Eligibility",
    "ExtraDay",
    "FindRequest",
    "FreeSlot",
    "LogSender",
    "Message",
    "Order",
    "QueueEntry",
    "QueueView",
    "Sender",
    "Series",
    "Session",
    "SessionCancellation",
    "SlotReport",
    "SmsGateway",
    "SmsSender",
    "WeChatGateway",
    "WeChatSender",
    "acting_as",
    "administer_medication",
    "availability_extension",
    "availability_of",
    "book",
    "call_next",
    "cancel",
    "cancel_session",
    "check_in",
    "check_in_by_identifier",
    "clinic_list",
    "current_actor",
    "find_slots",
    "finish_visit",
    "generate_slots",
    "hold",
    "identify_patient",
    "install",
    "join_waitlist",
    "load_policy",
    "no_show",
    "place_orders",
    "policy_resource",
    "queue",
    "record_vital_signs",
    "release_expired_holds",
    "reschedule",
    "results_over_time",
    "roll_window",
    "save_policy",
    "ward_worklist",
    "write_note",
]
