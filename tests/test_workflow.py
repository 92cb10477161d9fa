"""The request state machine and its store, without Slack: races, restarts, the audit trail."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.commands import SignSpec
from bot.pam360.client import build_client
from bot.pam360.signer import PAM360Signer
from bot.policy import GroupLookupFailed, Policy
from bot.store import Store
from bot.workflow import Refusal, Workflow
from tests.scenario import sign_calls

SPEC = SignSpec(
    csr_id=303,
    sign_type="root",
    root_name="testroot",
    root_serial="1879376424c",
    days=100,
    intermediate=False,
)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def no_groups(group: str) -> list[str]:
    raise GroupLookupFailed(group, "no_such_subteam")


def make_workflow(database: str, clock: Clock, **policy: object) -> Workflow:
    settings: dict[str, object] = {"approvers": ["UAPPROVER"], "group_members": no_groups}
    settings.update(policy)
    client = build_client("https://pam360.test:8282", "token", timeout=5)
    return Workflow(
        Store(database),
        Policy(**settings),  # type: ignore[arg-type]
        PAM360Signer(client),
        pending_hours=72,
        longest_signing=5,
        clock=clock,
    )


@pytest.fixture
def database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


def submit(workflow: Workflow, requester: str = "UREQUESTER") -> int:
    record, _alone = workflow.submit(
        team_id="T1", requester=requester, spec=SPEC, origin_channel="C1", response_url=None
    )
    return record.id


def test_many_approvals_at_once_move_the_request_once(database: str, pam360: object) -> None:
    clock = Clock()
    workflows = [make_workflow(database, clock) for _ in range(4)]  # four replicas, one store
    request_id = submit(workflows[0])
    start = threading.Barrier(16)
    kinds: list[str] = []

    def approve(workflow: Workflow) -> None:
        start.wait()
        kinds.append(workflow.approve(request_id, "UAPPROVER").kind)

    threads = [threading.Thread(target=approve, args=(workflows[n % 4],)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(kinds) == ["already"] * 15 + ["approved"]
    states = [event.state for event in workflows[0].history(request_id)]
    assert states == ["pending", "signing"]


def test_a_request_survives_a_restart_and_signs_once(database: str, pam360: object) -> None:
    clock = Clock()
    request_id = submit(make_workflow(database, clock))

    again = make_workflow(database, clock)
    assert again.approve(request_id, "UAPPROVER").kind == "approved"
    signed = again.sign(request_id)
    again.sign(request_id)

    assert signed.state == "signed"
    assert (signed.certificate_id, signed.certificate_serial) == ("309", "b7d5fcb7")
    assert len(sign_calls(pam360)) == 1  # type: ignore[arg-type]


def test_audit_trail_names_who_did_what(database: str, pam360: object) -> None:
    clock = Clock()
    workflow = make_workflow(database, clock)
    request_id = submit(workflow)
    clock.now += timedelta(minutes=5)
    workflow.approve(request_id, "UAPPROVER")
    workflow.sign(request_id)

    events = [(e.actor, e.state, e.at) for e in workflow.history(request_id)]
    assert events[:2] == [
        ("UREQUESTER", "pending", datetime(2026, 12, 3, 9, 0, tzinfo=UTC)),
        ("UAPPROVER", "signing", datetime(2026, 12, 3, 9, 5, tzinfo=UTC)),
    ]
    assert events[2][:2] == ("PAM360", "signed")


def test_old_pending_requests_expire_and_cannot_be_approved(database: str) -> None:
    clock = Clock()
    workflow = make_workflow(database, clock)
    request_id = submit(workflow)

    clock.now += timedelta(hours=72, seconds=1)

    assert workflow.pending("T1") == []
    assert workflow.approve(request_id, "UAPPROVER").kind == "expired"
    assert workflow.get(request_id).state == "expired"


def test_sweep_marks_a_dead_signer_unknown_and_keeps_fresh_ones(database: str) -> None:
    clock = Clock()
    workflow = make_workflow(database, clock)
    stale, fresh = submit(workflow), submit(workflow)
    workflow.approve(stale, "UAPPROVER")
    clock.now += timedelta(seconds=30)
    workflow.approve(fresh, "UAPPROVER")

    clock.now += timedelta(seconds=5 + 60 - 29)
    moved = workflow.sweep()

    assert [record.id for record in moved] == [stale]
    assert workflow.get(stale).state == "unknown"
    assert workflow.get(fresh).state == "signing"
    assert workflow.sign(stale).state == "unknown"  # never re-sent


def test_non_approver_and_own_request_without_self_approval(database: str) -> None:
    clock = Clock()
    workflow = make_workflow(database, clock, self_approval=False)
    own = submit(workflow, requester="UAPPROVER")

    with pytest.raises(Refusal, match="Only approvers"):
        workflow.deny(own, "USTRANGER")
    with pytest.raises(Refusal, match="another approver"):
        workflow.approve(own, "UAPPROVER")
    assert workflow.get(own).state == "pending"


def test_unreadable_group_refuses_the_requester_list(database: str) -> None:
    clock = Clock()
    workflow = make_workflow(database, clock, requesters=["SREQUESTERS"])

    with pytest.raises(GroupLookupFailed, match="SREQUESTERS could not be read"):
        submit(workflow)
    assert workflow.store.get(1) is None


def test_group_members_may_approve(database: str) -> None:
    clock = Clock()
    members = {"SPKI": ["UMEMBER"]}
    workflow = make_workflow(
        database, clock, approvers=["SPKI"], group_members=lambda group: members[group]
    )
    request_id = submit(workflow)

    assert workflow.approve(request_id, "UMEMBER").kind == "approved"


def test_requester_not_listed_is_refused_and_nothing_stored(database: str) -> None:
    clock = Clock()
    workflow = make_workflow(database, clock, requesters=["UALLOWED"])

    with pytest.raises(Refusal, match="SIGNCSR_REQUESTERS"):
        submit(workflow, requester="UOTHER")
    assert workflow.store.get(1) is None


def test_a_member_of_a_readable_group_approves_though_another_group_is_unreadable(
    database: str,
) -> None:
    members = {"SPKI": ["UMEMBER"]}

    def lookup(group: str) -> list[str]:
        return members[group] if group in members else no_groups(group)

    workflow = make_workflow(
        database,
        Clock(),
        approvers=["SBROKEN", "SPKI"],
        group_members=lookup,
    )
    request_id = submit(workflow)

    assert workflow.approve(request_id, "UMEMBER").kind == "approved"
    with pytest.raises(GroupLookupFailed, match="SBROKEN could not be read"):
        workflow.approve(request_id, "UOUTSIDER")


def test_approvers_may_always_ask(database: str) -> None:
    workflow = make_workflow(database, Clock(), approvers=["UAPPROVER"], requesters=["UALLOWED"])

    assert submit(workflow, requester="UAPPROVER") == 1
    with pytest.raises(Refusal, match="SIGNCSR_REQUESTERS"):
        submit(workflow, requester="UOTHER")
