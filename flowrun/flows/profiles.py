"""Sandbox profiles: what a run's sandbox is (image, tools, repositories, env, network, model)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .loading import load_yaml_model


class RepositorySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str  # a git URL, or a local path (relative paths are resolved against the profile file)
    ref: str | None = None
    path: str = "repo"  # where it is cloned, relative to the workspace
    private: bool = False  # needs the GitHub integration's credential


class ResourceLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu_seconds: int = 600
    memory_mb: int = 2048
    file_size_mb: int = 512
    max_output_bytes: int = 1_000_000
    command_timeout_s: float = 600.0
    max_processes: int = 256


class McpServerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    command: list[str] | None = None
    url: str | None = None
    env: dict[str, str] = Field(default_factory=dict)


class SandboxProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = 1
    name: str
    description: str = ""
    backend: Literal["local", "e2b", "noop"] = "local"
    template: str | None = None  # e2b template or a base image name
    tools: list[str] = Field(default_factory=list)  # commands expected on PATH (health check)
    repositories: list[RepositorySpec] = Field(default_factory=list)
    repository_id: str | None = None  # matched by a start parameter named `repositoryId`
    env: dict[str, str] = Field(default_factory=dict)
    network: bool = False
    limits: ResourceLimits = Field(default_factory=ResourceLimits)
    model: str | None = None  # the AI runtime this profile uses
    mcp_servers: list[McpServerSpec] = Field(default_factory=list)
    lifetime_s: int = 3600
    source_dir: str | None = None  # set at load time: where relative repository paths resolve


def load_profile(path: Path) -> SandboxProfile:
    profile = load_yaml_model(SandboxProfile, path)
    return profile.model_copy(update={"source_dir": str(path.parent.resolve())})
