"""What a request may do: SMART on FHIR scopes, v1 (`patient/Observation.read`,
`user/*.write`, `system/*.*`) and v2 (`patient/Observation.rs`,
`system/MedicationAdministration.cu?category=...`), as grants of interactions (c create,
r read, u update, d delete, s search) on resource types.

A scope that does not parse grants nothing (it is not an error: tokens carry `openid`,
`launch/patient`, `offline_access` and the like). Access is the union of the grants.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from app.fhir.errors import ForbiddenError
from app.fhir.models import RESOURCE_TYPES

INTERACTIONS = "cruds"
# Types a wildcard scope does not reach: who accessed what is for auditors, whose scopes name
# the type (system/AuditEvent.rs), not for every `user/*.rs` token.
EXPLICIT_ONLY = frozenset({"AuditEvent"})
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE = re.compile(
    r"^(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]+)"
    r"\.(?P<what>read|write|\*|c?r?u?d?s?)(?:\?(?P<query>.+))?$"
)
_WORDS = {
    "c": "create",
    "r": "read",
    "u": "update",
    "d": "delete",
    "s": "search",
}


@dataclass(frozen=True, slots=True)
class Grant:
    """One scope: `interactions` on `resource_type` ("*": every type), in a context. `filters`
    (v2 `?param=value`) narrow it to resources matching them."""

    context: str  # patient | user | system
    resource_type: str
    interactions: frozenset[str]
    filters: tuple[tuple[str, str], ...] = ()

    def covers(self, resource_type: str, interaction: str) -> bool:
        if interaction not in self.interactions:
            return False
        if self.resource_type == "*":
            return resource_type not in EXPLICIT_ONLY
        return self.resource_type == resource_type


def parse_scope(scope: str) -> Grant | None:
    """The grant a scope string makes, or None if it is not a resource scope."""
    match = _SCOPE.match(scope)
    if match is None:
        return None
    what = match["what"]
    if not what:
        return None  # `patient/Observation.` names no interaction
    if match["query"] is not None and what in _V1:
        return None  # filters are v2 only
    resource_type = match["type"]
    if resource_type != "*" and resource_type not in RESOURCE_TYPES:
        return None
    filters: tuple[tuple[str, str], ...] = ()
    if match["query"]:
        filters = tuple(parse_qsl(match["query"], keep_blank_values=False, strict_parsing=False))
        if not filters:
            return None
    interactions = frozenset(_V1.get(what, what))
    return Grant(match["context"], resource_type, interactions, filters)


@dataclass(frozen=True)
class Access:
    """What a request may do. `everyone` when no authorization is configured: everything.

    Patient-context grants (`patient/...`) reach only the token's patient's compartment
    (`compartment()` names the patient), and need the token's `patient`: without one they grant
    nothing. Grants with v2 `?param=value` filters reach only resources matching that search
    (`restriction()`). Where grants of different reach cover one interaction, the bounds applied
    are never wider than their union: the compartment when any covering grant is patient-context
    and none is unbounded, the filters when every covering grant has some."""

    grants: tuple[Grant, ...] = ()
    patient: str | None = None
    subject: str | None = None
    client_id: str | None = None
    everyone: bool = False
    scopes: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_scopes(
        cls,
        scopes: list[str],
        patient: str | None = None,
        subject: str | None = None,
        client_id: str | None = None,
    ) -> Access:
        grants = tuple(g for s in scopes if (g := parse_scope(s)) is not None)
        return cls(grants, patient, subject, client_id, scopes=tuple(scopes))

    def _usable(self, grant: Grant) -> bool:
        return grant.context != "patient" or self.patient is not None

    def _covering(self, resource_type: str, interaction: str) -> list[Grant]:
        return [g for g in self.grants if g.covers(resource_type, interaction) and self._usable(g)]

    @property
    def bounded(self) -> bool:
        """Whether some grant reaches only part of its type (a compartment or a filter)."""
        if self.everyone:
            return False
        return self.patient is not None or any(g.filters for g in self.grants)

    def compartment(self, resource_type: str, interaction: str) -> str | None:
        """The patient whose compartment bounds `interaction` on the type: None when a user or
        system grant without filters allows it (or nothing does: `require` refuses that
        first)."""
        if self.everyone or self.patient is None:
            return None
        wide = any(
            g.context != "patient" and not g.filters
            for g in self._covering(resource_type, interaction)
        )
        return None if wide else self.patient

    def restriction(self, resource_type: str, interaction: str) -> tuple[tuple[str, str], ...]:
        """The search a resource must match for `interaction` on the type under v2 filtered
        scopes (`Observation.rs?category=laboratory`): () when some covering grant has no
        filter. Several filtered grants combine when each filters one and the same parameter
        (its values OR'ed, as a comma does in a search); other mixes are refused."""
        if self.everyone:
            return ()
        covering = self._covering(resource_type, interaction)
        if not covering or any(not g.filters for g in covering):
            return ()
        if len(covering) == 1:
            return covering[0].filters
        names = {name for g in covering for name, _ in g.filters}
        if len(names) == 1 and all(len(g.filters) == 1 for g in covering):
            values = dict.fromkeys(v for g in covering for _, v in g.filters)
            return ((names.pop(), ",".join(values)),)
        raise ForbiddenError(
            f"The access token's scopes for {_WORDS[interaction]} on {resource_type} carry "
            "filters this server cannot combine (several grants filtering different "
            "parameters): ask for one filtered scope per type"
        )

    def allows(self, resource_type: str, interaction: str) -> bool:
        if self.everyone:
            return True
        return any(g.covers(resource_type, interaction) and self._usable(g) for g in self.grants)

    def allows_all_types(self, interaction: str) -> bool:
        if self.everyone:
            return True
        wildcard = any(
            g.resource_type == "*" and interaction in g.interactions and self._usable(g)
            for g in self.grants
        )
        return wildcard and all(self.allows(t, interaction) for t in EXPLICIT_ONLY)

    def types_allowed(self, interaction: str) -> tuple[str, ...]:
        """The resource types `interaction` is allowed on (every type when a grant says *)."""
        if self.allows_all_types(interaction):
            return RESOURCE_TYPES
        return tuple(t for t in RESOURCE_TYPES if self.allows(t, interaction))

    def readable(self, resource_type: str) -> bool:
        """Whether resources of the type may be returned (read, or as search results)."""
        return self.allows(resource_type, "r") or self.allows(resource_type, "s")

    def require(self, resource_type: str, *interactions: str) -> None:
        for interaction in interactions:
            if not self.allows(resource_type, interaction):
                raise ForbiddenError(self._refusal(resource_type, interaction))

    def require_all_types(self, interaction: str, what: str) -> None:
        if not self.allows_all_types(interaction):
            raise ForbiddenError(
                f"{what} needs a scope granting {_WORDS[interaction]} on every resource type "
                f"(such as system/*.{interaction} or user/*.{interaction})"
            )

    def _refusal(self, resource_type: str, interaction: str) -> str:
        held = [
            g for g in self.grants if g.covers(resource_type, interaction) and not self._usable(g)
        ]
        why = "; patient-context scopes need the token's patient claim" if held else ""
        return (
            f"The access token's scopes do not allow {_WORDS[interaction]} on {resource_type}{why}"
        )


EVERYONE = Access(everyone=True)
