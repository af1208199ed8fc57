"""Turning every check on an intent into one verdict: reject, review, or go.

The validators, the policy and the loop detectors each say something about
an intent; this is the one place that decides what those statements add up
to, so the rules are written down once:

- any failed check or policy ``deny`` rejects, naming every reason;
- a policy ``require_approval`` turns an auto-apply into a PR (review);
- policy ``warn``, deprecations and oscillations are shown, never blocking;
- ``dryrun`` rules are recorded on the policy check as what they *would* do;
- waivers used are listed on the decision.

Pure: values in, value out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.decision import Check
from orchestrator.oscillation import Oscillation
from validators.policy import PolicyResult


@dataclass(frozen=True, kw_only=True)
class Verdict:
    rejected: bool
    needs_review: bool
    #: Why it is rejected, or why it needs review.
    reasons: list[str]
    warnings: list[str] = field(default_factory=list)
    waivers: list[dict[str, Any]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    #: Not blocking, but named among the decision's reasons: agents fighting (A→B→A).
    flags: list[str] = field(default_factory=list)


def policy_check(policy: PolicyResult) -> Check:
    """The policy's findings as one check on the decision."""
    return Check(name="policy", passed=policy.allowed, messages=policy.messages())


def combine(
    *,
    checks: Sequence[Check],
    policy: PolicyResult,
    no_change: bool,
    oscillations: Sequence[Oscillation] = (),
    deprecations: Sequence[str] = (),
) -> Verdict:
    all_checks = [*checks, policy_check(policy)]
    rejections = [m for c in checks if not c.passed for m in (c.messages or [f"{c.name} check failed"])]
    rejections += [f"{v.message} [{v.rule}]" for v in policy.deny]
    if no_change:
        rejections.append("no change: every resource already has the proposed content")
    flags = [o.describe() for o in oscillations]
    warnings = [*deprecations, *flags]
    warnings += [f"{v.message} [{v.rule}]" for v in policy.warn]
    waivers = [w.model_dump(mode="json", exclude_none=True) for w in policy.waived]
    if rejections:
        return Verdict(
            rejected=True,
            needs_review=False,
            reasons=[*rejections, *flags],
            warnings=warnings,
            waivers=waivers,
            checks=all_checks,
            flags=flags,
        )
    review = [f"needs human approval: {v.message} [{v.rule}]" for v in policy.require_approval]
    return Verdict(
        rejected=False,
        needs_review=bool(review),
        reasons=review,
        warnings=warnings,
        waivers=waivers,
        checks=all_checks,
        flags=flags,
    )
