"""The published ketamine case as an R4B transaction Bundle, built from ../shared/CASE.md.

Source: Hanna AF et al., "Intravenous Ketamine Alleviates Pain in a Rheumatoid Arthritis Patient
With Comorbid Fibromyalgia", J Med Cases 2018;9(5):142-144, doi:10.14740/jmc3017w.

`python -m app.case.build` validates the Bundle and rewrites data/ketamine-case-bundle.json and
data/ketamine-case-keys.json (bundle key -> fullUrl). Every fullUrl is a uuid5 of a fixed namespace
and the entry's bundle key, so the output is reproducible byte for byte.
"""

from __future__ import annotations

import json
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

Resource = dict[str, Any]
Keyed = list[tuple[str, Resource]]

DATA_DIR = Path(__file__).resolve().parent / "data"
BUNDLE_PATH = DATA_DIR / "ketamine-case-bundle.json"
KEYS_PATH = DATA_DIR / "ketamine-case-keys.json"

DOI_URL = "https://doi.org/10.14740/jmc3017w"
# Derived from the DOI, not random, so anyone can recompute a key's fullUrl.
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, DOI_URL)

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
TERMINOLOGY = "http://terminology.hl7.org/CodeSystem"
DAR_EXTENSION = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"

# --- Dates (CASE.md A.1). Only the baseline and the protocol start are stated; the rest follow
# from them by the rules R1-R5, so the arithmetic lives here rather than in literals.
BASELINE_DAY = date(2016, 1, 27)  # stated; also the presentation day (age 49)
PROTOCOL_START = date(2016, 8, 22)  # stated
PROTOCOL_DOSES_MG = (428, 856, 856, 1063, 1063, 1063, 1063, 1063, 1063, 1063)
PROTOCOL_DAYS = tuple(PROTOCOL_START + timedelta(days=i) for i in range(10))  # R1
PROTOCOL_END = PROTOCOL_DAYS[-1]
BOOSTER1_START = PROTOCOL_END + timedelta(days=21)  # R2


def add_months(day: date, months: int) -> date:
    """Calendar-month arithmetic (R3); raises if the day does not exist in the target month."""
    index = day.month - 1 + months
    return day.replace(year=day.year + index // 12, month=index % 12 + 1)


BOOSTER2_START = add_months(BOOSTER1_START, 3)  # R3
# "2-day booster": one session per calendar day, like R1.
BOOSTER1_DAYS = (BOOSTER1_START, BOOSTER1_START + timedelta(days=1))
BOOSTER2_DAYS = (BOOSTER2_START, BOOSTER2_START + timedelta(days=1))
FOLLOWUP_DAY = BOOSTER2_DAYS[-1] + timedelta(days=90)  # R4
LFT_DAYS = {"d24": PROTOCOL_START + timedelta(days=24), "d56": PROTOCOL_START + timedelta(days=56)}
BASELINE_PAIN = 10
AGE_YEARS = 49
NOT_REPORTED = f"Before {PROTOCOL_START.isoformat()} (date not reported)"

# The inference rules of CASE.md A.2, quoted into the note of every resource whose content they
# determine (directly or through an anchor date), so the assumptions travel with the data.
RULES = {
    "R1": (
        "R1 (inferred): '10-day IV ketamine infusion protocol' and '10 consecutive IV infusion "
        "sessions' are read as one infusion per calendar day, "
        f"{PROTOCOL_START.isoformat()} to {PROTOCOL_END.isoformat()}. The weekdays-only reading "
        "would move infusions 6-10, the post-protocol rating and every date anchored on them by "
        "3 days; dose totals and counts would not change."
    ),
    "R2": (
        "R2 (approximate): 'approximately 3 weeks later' is anchored at the last protocol "
        f"infusion: {PROTOCOL_END.isoformat()} + 21 d = {BOOSTER1_START.isoformat()}."
    ),
    "R3": (
        "R3 (approximate): 'Approximately 3 months after this booster infusion' is anchored at "
        f"the booster-1 start: {BOOSTER1_START.isoformat()} + 3 calendar months = "
        f"{BOOSTER2_START.isoformat()}."
    ),
    "R4": (
        "R4 (inferred, approximate anchor): '90 days since the last booster infusion' is "
        f"anchored at the last booster-2 administration: {BOOSTER2_DAYS[-1].isoformat()} + 90 d "
        f"= {FOLLOWUP_DAY.isoformat()}."
    ),
    "R5": (
        "R5 (derived-exact): LFT offsets count the first infusion "
        f"({PROTOCOL_START.isoformat()}) as day 0: +24 d = {LFT_DAYS['d24'].isoformat()}, "
        f"+56 d = {LFT_DAYS['d56'].isoformat()}."
    ),
    "R6": (
        "R6: same-day order is carried by references, never by invented clock times. A "
        "post-infusion rating has partOf -> that MedicationAdministration (it came after the "
        "dose); a pre-booster rating is cited in the booster administrations' reasonReference "
        "(it came before the dose)."
    ),
    "R7": (
        "R7: this approximate date is kept at day precision (US Core us-core-1; ordering-based "
        "analytics) rather than month precision; its uncertainty is about +/- 1-2 weeks."
    ),
}


# --- Small constructors -------------------------------------------------------------------------


def full_url(key: str) -> str:
    return f"urn:uuid:{uuid.uuid5(NAMESPACE, key)}"


def ref(key: str) -> dict[str, str]:
    return {"reference": full_url(key)}


def coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def concept(system: str, code: str, display: str, text: str | None = None) -> Resource:
    out: Resource = {"coding": [coding(system, code, display)]}
    if text is not None:
        out["text"] = text
    return out


def text_concept(text: str) -> dict[str, str]:
    return {"text": text}


def quantity(value: int, code: str) -> Resource:
    return {"value": value, "unit": code, "system": UCUM, "code": code}


def notes(*texts: str) -> list[dict[str, str]]:
    return [{"text": text} for text in texts]


def rules(*names: str) -> tuple[str, ...]:
    return tuple(RULES[name] for name in names)


SUBJECT = ref("patient")
UNKNOWN = concept(f"{TERMINOLOGY}/data-absent-reason", "unknown", "Unknown")
NORMAL = [concept(f"{TERMINOLOGY}/v3-ObservationInterpretation", "N", "Normal")]
HIGH = [concept(f"{TERMINOLOGY}/v3-ObservationInterpretation", "H", "High")]
SURVEY = [concept(f"{TERMINOLOGY}/observation-category", "survey", "Survey")]
LABORATORY = [concept(f"{TERMINOLOGY}/observation-category", "laboratory", "Laboratory")]
NEGATIVE = concept(SNOMED, "260385009", "Negative (qualifier value)", "Negative")
IV_ROUTE = concept(SNOMED, "47625008", "Intravenous route (qualifier value)")
PI_NRS = concept(
    LOINC,
    "72514-3",
    "Pain severity - 0-10 verbal numeric rating [Score] - Reported",
    "PI-NRS (11-point pain intensity numerical rating scale; 0 = no pain, 10 = worst possible)",
)


def score(value: int) -> Resource:
    return quantity(value, "{score}")


def score_range(low: int, high: int) -> Resource:
    return {"low": score(low), "high": score(high)}


# --- Patient and clinic (A.3) ---------------------------------------------------------------------


def _people() -> Keyed:
    patient: Resource = {
        "resourceType": "Patient",
        # The publication is the only namespace in which this patient is identified.
        "identifier": [{"system": DOI_URL, "value": "patient"}],
        # Name is mandatory in US Core (us-core-6) but not reported: `unknown` (CONF-0040/0180).
        "name": [{"extension": [{"url": DAR_EXTENSION, "valueCode": "unknown"}]}],
        "gender": "female",
        # No birthDate: not reported, and an optional element is omitted (CONF-0039); the age
        # is the dated obs-age Observation instead.
        "managingOrganization": ref("org-fsi"),
    }
    organization: Resource = {
        "resourceType": "Organization",
        "name": "Florida Spine Institute",
        # As printed in the article; no country is stated.
        "address": [
            {
                "line": ["2250 Drew St."],
                "city": "Clearwater",
                "state": "FL",
                "postalCode": "33765",
            }
        ],
    }
    return [("patient", patient), ("org-fsi", organization)]


# --- Conditions -------------------------------------------------------------------------------


def _condition(code: Resource, evidence: list[Resource], note: tuple[str, ...]) -> Resource:
    return {
        "resourceType": "Condition",
        "clinicalStatus": concept(f"{TERMINOLOGY}/condition-clinical", "active", "Active"),
        "verificationStatus": concept(
            f"{TERMINOLOGY}/condition-ver-status", "confirmed", "Confirmed"
        ),
        "category": [
            concept(f"{TERMINOLOGY}/condition-category", "problem-list-item", "Problem List Item")
        ],
        "code": code,
        "subject": SUBJECT,
        # Onset and recordedDate are unknown, so they are omitted rather than guessed.
        "evidence": evidence,
        "note": notes(*note),
    }


def _conditions() -> Keyed:
    ra = _condition(
        # No verified SNOMED concept for seronegative *and* erosive: "erosive" stays in text.
        concept(
            SNOMED,
            "239792003",
            "Seronegative rheumatoid arthritis (disorder)",
            "Seronegative erosive rheumatoid arthritis",
        ),
        [
            {"detail": [ref("obs-crp"), ref("obs-rf"), ref("obs-ccp")]},
            {
                "code": [
                    text_concept("Stiffness in the mornings for more than 60 min"),
                    text_concept(
                        "Symmetric diffuse joint pain in bilateral proximal joints of the hands "
                        "and shoulders"
                    ),
                ]
            },
        ],
        (
            "'referred to the Florida Spine Institute (Clearwater, FL) by her rheumatologist "
            "after being diagnosed with seronegative erosive RA'. Diagnosis date not reported; "
            "onset and recordedDate are omitted.",
            "SNOMED 239792003 does not carry 'erosive'; no verified concept for seronegative "
            "erosive RA exists, so it is kept in code.text.",
        ),
    )
    fm = _condition(
        concept(SNOMED, "203082005", "Fibromyalgia (disorder)", "Fibromyalgia"),
        [
            {
                "code": [
                    text_concept("Diffuse muscular pain"),
                    text_concept("Met the ACR 2010 diagnostic criteria for fibromyalgia"),
                ]
            }
        ],
        (
            "'met the diagnostic criteria for fibromyalgia established by the ACR [6]' (the 2010 "
            "criteria). No WPI or SS score is reported: this is a clinician assertion, not a "
            "computed criteria result. Onset and recordedDate are not reported and are omitted.",
        ),
    )
    return [("cond-ra", ra), ("cond-fm", fm)]


# --- Observations -----------------------------------------------------------------------------


def _age() -> Keyed:
    # C.9: birth date interval [t - (A+1) y + 1 d, t - A y]; documented, never written to birthDate.
    earliest = BASELINE_DAY.replace(year=BASELINE_DAY.year - AGE_YEARS - 1) + timedelta(days=1)
    latest = BASELINE_DAY.replace(year=BASELINE_DAY.year - AGE_YEARS)
    age: Resource = {
        "resourceType": "Observation",
        "status": "final",
        "code": concept(LOINC, "30525-0", "Age"),
        "subject": SUBJECT,
        "effectiveDateTime": BASELINE_DAY.isoformat(),
        "valueQuantity": quantity(AGE_YEARS, "a"),
        "note": notes(
            "'A 49-year-old woman'. Date inferred: the abstract says she 'presented to the clinic "
            "in extreme pain, described to be a 10', and the case section dates that 10 to "
            "'January 27, 2016', so she was 49 at presentation on that day.",
            f"Implied birth date between {earliest.isoformat()} and {latest.isoformat()}. "
            "Patient.birthDate is omitted because the birth date is not reported.",
        ),
    }
    return [("obs-age", age)]


def _lab(code: Resource, result: Resource, note: tuple[str, ...], day: date | None) -> Resource:
    out: Resource = {
        "resourceType": "Observation",
        "status": "final",
        "category": LABORATORY,
        "code": code,
        "subject": SUBJECT,
    }
    # An unknown date is omitted (US Core CONF-0039), never guessed.
    if day is not None:
        out["effectiveDateTime"] = day.isoformat()
    return out | result | {"note": notes(*note)}


def _diagnostic_labs() -> Keyed:
    undated = (
        "Date not reported (diagnostic labs from before the referral); effective[x] is omitted."
    )
    qualitative = (
        "Reported only as negative: coded as a qualitative [Presence] result with SNOMED "
        "Negative; no value or reference range is given."
    )
    crp = _lab(
        concept(LOINC, "1988-5", "C reactive protein [Mass/volume] in Serum or Plasma"),
        # obs-6 forbids a value with dataAbsentReason; the reported fact is the interpretation.
        {"dataAbsentReason": UNKNOWN, "interpretation": HIGH},
        (
            "'Her diagnostic labs indicated that she had high levels of C-reactive protein'. No "
            "value or reference range is reported, so the value is absent (unknown) and only "
            "the interpretation H is recorded.",
            undated,
        ),
        None,
    )
    rf = _lab(
        concept(LOINC, "33910-1", "Rheumatoid factor [Presence] in Serum"),
        {"valueCodeableConcept": NEGATIVE, "interpretation": NORMAL},
        ("'negative for rheumatoid factor'.", qualitative, undated),
        None,
    )
    ccp = _lab(
        concept(LOINC, "53028-7", "Cyclic citrullinated peptide Ab [Presence] in Serum"),
        {"valueCodeableConcept": NEGATIVE, "interpretation": NORMAL},
        ("'negative for ... anti-cyclic citrullinated peptide antibody'.", qualitative, undated),
        None,
    )
    return [("obs-crp", crp), ("obs-rf", rf), ("obs-ccp", ccp)]


LIVER_ANALYTES = (
    ("alt", "1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma"),
    ("alp", "6768-6", "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma"),
    ("ast", "1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma"),
    ("ggt", "2324-2", "Gamma glutamyl transferase [Enzymatic activity/volume] in Serum or Plasma"),
)


def _liver_tests() -> Keyed:
    normal_only = (
        "'This patient never exhibited signs of hepatotoxicity with normal labs pre-infusion and "
        "at 24 and 56 days after the first infusion.' Reported only as normal: the value is "
        "absent (unknown) and the interpretation is N; no reference range is invented."
    )
    pre = (
        "Pre-infusion: 'passing a liver function test' before the protocol. Date not reported "
        "(before the first infusion); effective[x] is omitted and the timing is carried by the "
        "first infusion's supportingInformation."
    )
    out: Keyed = []
    for point, day, note in (
        ("pre", None, (normal_only, pre)),
        ("d24", LFT_DAYS["d24"], (normal_only, *rules("R5"))),
        ("d56", LFT_DAYS["d56"], (normal_only, *rules("R5"))),
    ):
        for analyte, code, display in LIVER_ANALYTES:
            resource = _lab(
                concept(LOINC, code, display),
                {"dataAbsentReason": UNKNOWN, "interpretation": NORMAL},
                note,
                day,
            )
            out.append((f"obs-lft-{point}-{analyte}", resource))
    return out


def _pain(day: date, value: Resource, note: tuple[str, ...], **links: Any) -> Resource:
    return (
        {
            "resourceType": "Observation",
            "status": "final",
            "category": SURVEY,
            "code": PI_NRS,
            "subject": SUBJECT,
            "effectiveDateTime": day.isoformat(),
        }
        | value
        | links
        | {"note": notes(*note)}
    )


def _derived_method(percent: str, result: str) -> Resource:
    return text_concept(
        f"Derived, not rated by the patient: {percent} of the baseline PI-NRS {BASELINE_PAIN} "
        f"({BASELINE_DAY.isoformat()}) = {result}, using the report's own equation of percentages "
        "with the PI-NRS ('PI-NRS 2, an 80% improvement')."
    )


def _pain_observations() -> Keyed:
    range_note = (
        "A range is a valueRange (inclusive bounds), not a comparator (which means a measurement "
        "limit) or an invented midpoint."
    )
    baseline = _pain(
        BASELINE_DAY,
        {"valueQuantity": score(BASELINE_PAIN)},
        (
            "'On January 27, 2016, her pain intensity was reported to be 10 on an 11-point pain "
            "intensity numerical rating scale (PI-NRS), where 0 is no pain and 10 is worst "
            "possible pain.' Date stated.",
        ),
    )
    after_first = _pain(
        PROTOCOL_DAYS[0],
        {"valueQuantity": score(6)},
        (
            "'Following the first infusion session, the patient indicated that her pain "
            "intensity had fallen to 6 (PI-NRS).' Date inferred: rated the same day, after the "
            "dose.",
            *rules("R6"),
        ),
        partOf=[ref("ma-protocol-01")],
    )
    after_last = _pain(
        PROTOCOL_DAYS[-1],
        {"valueRange": score_range(0, 1)},
        (
            "'Following the last infusion, the patient indicated that her pain had been almost "
            "completely eliminated (PI-NRS 0 - 1).' Date inferred: rated the same day as "
            "infusion 10, after the dose.",
            range_note,
            *rules("R1", "R6"),
        ),
        partOf=[ref("ma-protocol-10")],
    )
    pre_booster1 = _pain(
        BOOSTER1_START,
        {"valueQuantity": score(BASELINE_PAIN * 40 // 100)},
        (
            "'the patient returned for a 2-day booster infusion approximately 3 weeks later due "
            "to her pain levels returning to 40% of her pre-ketamine levels.'",
            *rules("R1", "R2", "R6", "R7"),
        ),
        method=_derived_method("40%", str(BASELINE_PAIN * 40 // 100)),
        derivedFrom=[ref("obs-pain-baseline")],
    )
    low, high = BASELINE_PAIN * 30 // 100, BASELINE_PAIN * 40 // 100
    pre_booster2 = _pain(
        BOOSTER2_START,
        {"valueRange": score_range(low, high)},
        (
            "'Approximately 3 months after this booster infusion, the patient returned for "
            "another 2-day booster infusion with pain levels at 30-40% of her pre-ketamine "
            "levels.'",
            range_note,
            *rules("R1", "R2", "R3", "R6", "R7"),
        ),
        method=_derived_method("30-40%", f"{low}-{high}"),
        derivedFrom=[ref("obs-pain-baseline")],
    )
    followup = _pain(
        FOLLOWUP_DAY,
        {"valueQuantity": score(2)},
        (
            "'At the most recent follow-up visit (90 days since the last booster infusion), the "
            "patient reported that her pain levels were low (PI-NRS 2), an 80% improvement from "
            "her pre-ketamine levels.'",
            *rules("R1", "R2", "R3", "R4", "R7"),
        ),
    )
    return [
        ("obs-pain-baseline", baseline),
        ("obs-pain-after-inf1", after_first),
        ("obs-pain-after-inf10", after_last),
        ("obs-pain-pre-booster1", pre_booster1),
        ("obs-pain-pre-booster2", pre_booster2),
        ("obs-pain-followup", followup),
    ]


# --- Prior treatments (B.3 item 6) -------------------------------------------------------------

# In the report's order; None where no RxCUI was verified (CASE.md E.1): text only, never guessed.
PRIOR_DRUGS: tuple[tuple[str, str | None], ...] = (
    ("methotrexate", "6851"),
    ("tocilizumab", "612865"),
    ("abatacept", "614391"),
    ("belimumab", None),
    ("apremilast", None),
    ("golimumab", None),
    ("leflunomide", "27169"),
)


def _prior_treatments() -> Keyed:
    out: Keyed = []
    for name, rxcui in PRIOR_DRUGS:
        medication = concept(RXNORM, rxcui, name, name) if rxcui is not None else text_concept(name)
        note = [
            "'Under the care of her rheumatologist, her arthritis was refractory to several "
            "conventional treatment options including methotrexate, tocilizumab, abatacept, "
            "belimumab, apremilast, golimumab, and leflunomide.'",
            "Status 'stopped' is inferred from 'refractory'; when it was stopped, or whether it "
            "was continued, is not reported. No effective[x]: dates unknown.",
        ]
        if rxcui is None:
            note.append("No RxNorm code was verified for this drug, so it is recorded as text.")
        out.append(
            (
                f"ms-{name}",
                {
                    "resourceType": "MedicationStatement",
                    "status": "stopped",
                    "statusReason": [text_concept("Refractory: inadequate response")],
                    "medicationCodeableConcept": medication,
                    "subject": SUBJECT,
                    "reasonReference": [ref("cond-ra")],
                    "note": notes(*note),
                },
            )
        )
    return out


# --- Procedures (B.3 items 7 and 8) ------------------------------------------------------------


def _procedure(code: Resource, performed: Resource, note: tuple[str, ...], **more: Any) -> Resource:
    return (
        {"resourceType": "Procedure", "status": "completed", "code": code, "subject": SUBJECT}
        | performed
        | more
        | {"note": notes(*note)}
    )


def _period(days: tuple[date, ...]) -> Resource:
    return {"performedPeriod": {"start": days[0].isoformat(), "end": days[-1].isoformat()}}


def _procedures() -> Keyed:
    # us-core-7 wants performed[x] on a completed procedure; a string says "unknown date" without
    # matching any date search.
    undated = {"performedString": NOT_REPORTED}
    before = (
        "Date not reported; it preceded the ketamine protocol ('Since other therapeutic options "
        "did not achieve adequate pain control, the off-label use of IV ketamine was discussed')."
    )
    conditions = [ref("cond-ra"), ref("cond-fm")]
    no_adverse = (
        "'All doses were well tolerated and no unexpected adverse effects were observed'; "
        "'experienced no adverse events'. No AdverseEvent is recorded for events that did not "
        "happen."
    )
    booster_days = (
        "One session per calendar day is assumed from '2-day booster infusion'. The dose is not "
        "reported."
    )
    return [
        (
            "proc-pt",
            _procedure(
                concept(
                    SNOMED,
                    "91251008",
                    "Physical therapy procedure (regime/therapy)",
                    "Physical therapy for cervical and lumbar pain",
                ),
                undated,
                (
                    "'physical therapy for cervical and lumbar pain with mild and temporary "
                    "relief'.",
                    before,
                ),
                reasonCode=[text_concept("Cervical and lumbar pain")],
                outcome=text_concept("Mild and temporary relief"),
            ),
        ),
        (
            "proc-tpi",
            _procedure(
                text_concept("Trigger point injections"),
                undated,
                (
                    "'Trigger point injections ... did not result in any significant pain relief'.",
                    before,
                ),
                outcome=text_concept("No significant pain relief"),
            ),
        ),
        (
            "proc-sij",
            _procedure(
                text_concept("Bilateral sacroiliac joint injections under fluoroscopy"),
                undated,
                (
                    "'bilateral sacroiliac joint injections under fluoroscopy did not result in "
                    "any significant pain relief'.",
                    before,
                ),
                reasonCode=[
                    text_concept(
                        "Symmetric bilateral sacroiliac joint pain with stiffness in the "
                        "mornings for more than 60 min"
                    )
                ],
                outcome=text_concept("No significant pain relief"),
            ),
        ),
        (
            "proc-rfa",
            _procedure(
                text_concept("Cervical radiofrequency ablation"),
                undated,
                (
                    "'She also underwent cervical radiofrequency ablation with no relief from "
                    "pain'.",
                    before,
                ),
                reasonCode=[text_concept("Cervical bilateral symmetrical facetogenic pain")],
                outcome=text_concept("No relief from pain"),
            ),
        ),
        (
            "proc-psych",
            _procedure(
                text_concept("Psychiatric evaluation for schizophrenia"),
                undated,
                (
                    "'scheduled for IV ketamine therapy after clearing a psychiatric evaluation "
                    "for schizophrenia and passing a liver function test'.",
                    before,
                ),
                reasonCode=[
                    text_concept("Screening before ketamine, which can exacerbate schizophrenia")
                ],
                outcome=text_concept("Cleared"),
            ),
        ),
        (
            "proc-ketamine-protocol",
            _procedure(
                text_concept("IV ketamine infusion protocol, 10 days"),
                _period(PROTOCOL_DAYS),
                (
                    "'The patient started a 10-day IV ketamine infusion protocol on August 22, "
                    "2016 at the Florida Spine Institute.' Start date stated.",
                    no_adverse,
                    *rules("R1"),
                ),
                performer=[{"actor": ref("org-fsi")}],
                reasonReference=conditions,
                outcome=text_concept(
                    "Pain almost completely eliminated (PI-NRS 0 - 1) after the last infusion; "
                    "RA symptoms improved drastically, no longer experiencing joint pain and "
                    "stiffness in the mornings."
                ),
            ),
        ),
        (
            "proc-ketamine-booster1",
            _procedure(
                text_concept("IV ketamine booster infusion, 2 days"),
                _period(BOOSTER1_DAYS),
                (booster_days, *rules("R1", "R2", "R7")),
                reasonReference=[ref("obs-pain-pre-booster1"), *conditions],
            ),
        ),
        (
            "proc-ketamine-booster2",
            _procedure(
                text_concept("IV ketamine booster infusion, 2 days"),
                _period(BOOSTER2_DAYS),
                (booster_days, *rules("R1", "R2", "R3", "R7")),
                reasonReference=[ref("obs-pain-pre-booster2"), *conditions],
            ),
        ),
    ]


# --- Ketamine administrations (B.3 item 5) -----------------------------------------------------

KETAMINE = "6130"


def _administration(
    day: date, course: str, medication_text: str, dosage: Resource, note: tuple[str, ...]
) -> Resource:
    # RxNorm IN, not an SCD: the vial strength is unknown and what ran was an admixture.
    return {
        "resourceType": "MedicationAdministration",
        "status": "completed",
        "medicationCodeableConcept": concept(RXNORM, KETAMINE, "ketamine", medication_text),
        "subject": SUBJECT,
        # No rate or duration is reported, so a day, not a period.
        "effectiveDateTime": day.isoformat(),
        "partOf": [ref(course)],
        "dosage": {"route": IV_ROUTE} | dosage,
        "note": notes(*note),
    }


def _administrations() -> Keyed:
    admixture = "Ketamine HCl in 100 mL of 0.9% sodium chloride (IV admixture)"
    salt = (
        "Dose as reported, in mg of ketamine HCl: whether this is the salt or the base "
        "equivalent is not stated, and no conversion is applied."
    )
    first = (
        "'The starting dose was 428 mg ketamine HCl in 100 mL of 0.9% sodium chloride.' Date "
        "stated (August 22, 2016)."
    )
    second_third = "'This was escalated to 856 mg for the second and third infusions'."
    remaining = "'further escalated to 1063 mg for the remaining infusions'."
    diluent = (
        "The 100 mL of 0.9% sodium chloride is stated for the starting dose only and is assumed "
        "for the escalated doses."
    )
    out: Keyed = []
    for number, (day, mg) in enumerate(zip(PROTOCOL_DAYS, PROTOCOL_DOSES_MG, strict=True), 1):
        if number == 1:
            note: tuple[str, ...] = (first, salt)
        else:
            quote = second_third if number <= 3 else remaining
            note = (quote, salt, diluent, *rules("R1"))
        resource = _administration(
            day,
            "proc-ketamine-protocol",
            admixture,
            {
                "text": f"{mg} mg ketamine HCl in 100 mL of 0.9% sodium chloride",
                "dose": quantity(mg, "mg"),
            },
            (f"Protocol infusion {number} of 10.", *note),
        )
        if number == 1:
            # The pre-ketamine clearance: normal LFTs and the psychiatric screening.
            resource["supportingInformation"] = [
                *(ref(f"obs-lft-pre-{analyte}") for analyte, _, _ in LIVER_ANALYTES),
                ref("proc-psych"),
            ]
        out.append((f"ma-protocol-{number:02d}", resource))

    booster_rules = {1: ("R1", "R2", "R6", "R7"), 2: ("R1", "R2", "R3", "R6", "R7")}
    for booster, days in ((1, BOOSTER1_DAYS), (2, BOOSTER2_DAYS)):
        for number, day in enumerate(days, 1):
            resource = _administration(
                day,
                f"proc-ketamine-booster{booster}",
                "Ketamine HCl IV infusion (diluent not reported for the boosters)",
                # No dose element at all: a booster is counted but never summed or imputed.
                {"text": "Dose not reported in the source"},
                (
                    f"Booster {booster}, day {number} of 2. One session per calendar day is "
                    "assumed from '2-day booster infusion'.",
                    *rules(*booster_rules[booster]),
                ),
            )
            # The relapse rating came before the dose (R6), and the conditions are the reason.
            resource["reasonReference"] = [
                ref(f"obs-pain-pre-booster{booster}"),
                ref("cond-ra"),
                ref("cond-fm"),
            ]
            out.append((f"ma-booster{booster}-{number:02d}", resource))
    return out


# --- Bundle -------------------------------------------------------------------------------------


def keyed_resources() -> Keyed:
    """Every (bundle key, resource) pair, in Bundle order."""
    return [
        *_people(),
        *_conditions(),
        *_age(),
        *_diagnostic_labs(),
        *_pain_observations(),
        *_liver_tests(),
        *_prior_treatments(),
        *_procedures(),
        *_administrations(),
    ]


def build_bundle() -> dict[str, Any]:
    """The case as a transaction Bundle: every entry a POST with a deterministic urn:uuid."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": full_url(key),
                "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"]},
            }
            for key, resource in keyed_resources()
        ],
    }


def bundle_keys() -> dict[str, str]:
    """Bundle key -> fullUrl, the way back from an entry to its CASE.md name."""
    return {key: full_url(key) for key, _ in keyed_resources()}


def references(node: Any) -> list[str]:
    """Every Reference.reference value anywhere under `node`."""
    if isinstance(node, dict):
        found = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return found + [target for value in node.values() for target in references(value)]
    if isinstance(node, list):
        return [target for item in node for target in references(item)]
    return []


def check(bundle: dict[str, Any]) -> None:
    """Validate each entry with the server's own validator; raise on the first failure.

    Also checks that every reference resolves inside the Bundle, which a per-resource
    validation cannot see.
    """
    from app.fhir.models import validate

    full_urls = {entry["fullUrl"] for entry in bundle["entry"]}
    for index, entry in enumerate(bundle["entry"]):
        resource = entry["resource"]
        validate(resource, resource["resourceType"])
        dangling = sorted(set(references(resource)) - full_urls)
        if dangling:
            raise ValueError(f"Bundle.entry[{index}] refers to no entry: {', '.join(dangling)}")


def render(data: Any) -> str:
    """The checked-in form: 2-space indent, sorted keys, trailing newline."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> None:
    bundle = build_bundle()
    check(bundle)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    BUNDLE_PATH.write_text(render(bundle), encoding="utf-8")
    KEYS_PATH.write_text(render(bundle_keys()), encoding="utf-8")
    print(f"wrote {len(bundle['entry'])} entries to {BUNDLE_PATH}")


if __name__ == "__main__":
    main()
