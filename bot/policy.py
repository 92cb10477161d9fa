"""Who may ask for a signature, who may approve one, and when one person is enough."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass


class GroupLookupFailed(Exception):
    """A user group's members could not be read; the policy then refuses rather than guess."""

    def __init__(self, group: str, reason: str) -> None:
        self.group = group
        super().__init__(
            f"The members of user group {group} could not be read ({reason}), so who may ask"
            " for or approve signatures cannot be checked. Nothing was changed; try again, or"
            " ask the bot's operator to check that group's ID in SIGNCSR_APPROVERS or"
            " SIGNCSR_REQUESTERS and the bot's usergroups:read scope."
        )


GroupMembers = Callable[[str], Iterable[str]]


@dataclass(frozen=True)
class Verdict:
    """Whether an approver may decide a request, and if not, why, in words."""

    allowed: bool
    reason: str = ""


class Policy:
    """Approvers and requesters are Slack user IDs (U…, W…) or user group IDs (S…)."""

    def __init__(
        self,
        *,
        approvers: Iterable[str],
        requesters: Iterable[str] = (),
        self_approval: bool = True,
        group_members: GroupMembers,
    ) -> None:
        self.approvers = tuple(approvers)
        self.requesters = tuple(requesters)
        self.self_approval = self_approval
        self._group_members = group_members

    def may_request(self, user: str) -> bool:
        """Anyone when no requester list is set; else listed users and group members, and
        approvers, who may always ask."""
        return not self.requesters or self._listed(user, self.requesters + self.approvers)

    def is_approver(self, user: str) -> bool:
        return self._listed(user, self.approvers)

    def signs_alone(self, user: str) -> bool:
        """An approver's own request needs no second approver when self-approval is on."""
        return self.self_approval and self.is_approver(user)

    def may_decide(self, user: str, requester: str) -> Verdict:
        """Checked when the click arrives; raises GroupLookupFailed rather than fail open."""
        if not self.is_approver(user):
            return Verdict(False, "Only approvers can approve or deny signing requests.")
        if user == requester and not self.self_approval:
            return Verdict(False, "You asked for this one: another approver has to decide it.")
        return Verdict(True)

    def _listed(self, user: str, entries: Iterable[str]) -> bool:
        """Listed by ID or as a member of a group. A group that cannot be read decides only
        when nothing else lists the user: then its failure is raised, never a guess."""
        entries = tuple(entries)
        if user in entries:
            return True
        unread: GroupLookupFailed | None = None
        for group in (entry for entry in entries if entry.startswith("S")):
            try:
                if user in set(self._group_members(group)):
                    return True
            except GroupLookupFailed as exc:
                unread = unread or exc
        if unread is not None:
            raise unread
        return False
