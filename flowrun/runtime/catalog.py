"""Flows, skills and sandbox profiles, loaded from directories and validated together."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..flows.errors import NotFound, TemplateError
from ..flows.profiles import SandboxProfile, load_profile
from ..flows.skills import Skill, load_skill
from ..flows.template import FlowTemplate, load_flow, validate_flow


@dataclass
class Catalog:
    flows: dict[str, FlowTemplate] = field(default_factory=dict)
    skills: dict[str, Skill] = field(default_factory=dict)
    profiles: dict[str, SandboxProfile] = field(default_factory=dict)

    @classmethod
    def load(cls, roots: Iterable[Path]) -> Catalog:
        """Each root may hold `flows/`, `skills/` and `profiles/` folders of YAML files.

        Raises:
            TemplateError: naming the file and field of the first problem found.
        """
        catalog = cls()
        flow_sources: dict[str, Path] = {}
        for root in roots:
            for path in sorted((root / "skills").glob("*.yaml")):
                skill = load_skill(path)
                catalog.skills[skill.slug] = skill
            for path in sorted((root / "profiles").glob("*.yaml")):
                profile = load_profile(path)
                catalog.profiles[profile.name] = profile
            for path in sorted((root / "flows").glob("*.yaml")):
                flow = load_flow(path)
                if flow.id in flow_sources:
                    raise TemplateError(f"{path}: id: flow {flow.id!r} is also defined in {flow_sources[flow.id]}")
                flow_sources[flow.id] = path
                catalog.flows[flow.id] = flow
        for flow_id, flow in catalog.flows.items():
            validate_flow(flow, catalog.skills, str(flow_sources[flow_id]))
        return catalog

    def add_flow(self, flow: FlowTemplate) -> None:
        validate_flow(flow, self.skills)
        self.flows[flow.id] = flow

    def flow(self, flow_id: str) -> FlowTemplate:
        try:
            return self.flows[flow_id]
        except KeyError:
            known = ", ".join(sorted(self.flows)) or "none"
            raise NotFound(f"no flow {flow_id!r} (flows: {known})", flow=flow_id) from None

    def skill(self, slug: str) -> Skill:
        try:
            return self.skills[slug]
        except KeyError:
            raise NotFound(f"no skill {slug!r}", skill=slug) from None
