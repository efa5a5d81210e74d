"""Why a practitioner broke the glass: the value set of break-glass reason codes.

A break-glass reason is a code from this small set, shown to compliance staff (and its display
to the patient); anything more is a note, which records seals with the patient's data key and
which never travels in clear (it may describe the patient's condition).

Where one fits, a code is HL7's: the v3 ActReason codes of the value set
ActConsentInformationAccessOverrideReason ("the reason that a provider may or has accessed
personal healthcare information; typically, this involves overriding the subject's consent
directives"), https://terminology.hl7.org/ValueSet-v3-ActConsentInformationAccessOverrideReason.html:
`OVRER` (emergency treatment override: the patient cannot consent and the condition is an
immediate threat to their health) and `OVRPS` (public safety override). `ETREAT`, the purpose
of use, says why the data is used, not why consent was overridden, so it stays the read's
`X-Purpose-Of-Use`. HL7 has no code for the patient being out of reach or for a consent that
should exist but is not recorded; those, and `other`, are caretrail's own, in the system
`urn:caretrail:break-glass-reason`.
"""

from __future__ import annotations

from dataclasses import dataclass

ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
CARETRAIL_REASON = "urn:caretrail:break-glass-reason"
MAX_NOTE_LENGTH = 500


@dataclass(frozen=True)
class BreakGlassReason:
    code: str
    system: str
    display: str  # what compliance staff and the patient read
    needs_note: bool = False  # a reason that says nothing by itself must be explained


REASONS: tuple[BreakGlassReason, ...] = (
    BreakGlassReason("OVRER", ACT_REASON, "Emergency treatment of a patient who cannot consent"),
    BreakGlassReason(
        "patient-unreachable",
        CARETRAIL_REASON,
        "The patient cannot be reached and care cannot wait",
    ),
    BreakGlassReason(
        "consent-not-recorded",
        CARETRAIL_REASON,
        "A consent the patient gave is missing or not yet recorded",
    ),
    BreakGlassReason("OVRPS", ACT_REASON, "A threat to public health or safety"),
    BreakGlassReason("other", CARETRAIL_REASON, "Another reason, explained in the note", True),
)
BY_CODE = {reason.code: reason for reason in REASONS}
CODES = tuple(BY_CODE)


def reason_display(code: str | None) -> str | None:
    """The words for a reason code, or None for no code or an unknown one: facts written
    before reasons were coded carry the practitioner's free text there, which only compliance
    staff may see, as it is."""
    known = BY_CODE.get(code) if code is not None else None
    return known.display if known is not None else None
