"""Works the stored deliveries: claim, reserve quota, wait for the rate limit, call LINE, record the outcome.

One dispatcher per sender instance. It only touches deliveries of the ``send.requests.v1`` partitions its
consumer owns (set by the rebalance listener), and its rate limits are its share of each limit in the same
proportion, so the instances together stay under LINE's limits (:mod:`tagline_sender.domain.ratelimit`).

Exactly-once toward LINE comes from three things together: a delivery is *claimed* with one conditional
update (``pending`` → ``sending`` with a claim token) so only one worker attempts it at a time; its retry key
is stored before the first attempt and reused on every retry, so LINE turns a repeat of an accepted call into
409 (= success); and every outcome is written with the claim token as predicate, so a worker whose lease ran
out cannot overwrite the work of the one that took over. Results go out through an outbox field
(``pending_result``) that the poller republishes after a crash.

The unit of work is a :class:`Call`: one LINE call and the deliveries it carries, all claimed with one claim
token. Usually that is one delivery. The deliveries of a reply group (every request answering one inbound
event with its reply token, :mod:`tagline_sender.domain.replies`) make one call together:

* **One reply per event**: a request joins its group with one conditional update of the open group, and
  the group is sealed (closed to requests) with another once its gather window has passed. Which worker
  makes the group's call is decided by a claim, like any delivery's: the worker that claims the group's
  *lead* (its first member; once the call is decided, its first included member that is not finished)
  claims every other member by ``_id`` (the group document lists them; no query by field), seals the group
  if it is still open and, on the group's first call, decides it: the members that fit in LINE's five
  message objects are recorded as the call's members, the others fail with the reason. Any member coming
  due triggers this; a worker that cannot claim the lead leaves the group to the one that did. A request
  that joins the group later is failed as late, never pushed. The call's body is the members' messages in
  arrival order; its outcome is recorded on every member, each with its own result (request id, method, 0
  billable for a reply).
* **Crash safety as for one delivery**: the members share the claim token and the lease; a crashed worker's
  members go back to pending together (marked ambiguous), and the next attempt claims the sealed members
  again and sends the same body. A reply attempt that got no answer is never followed by a push
  (:func:`~tagline_sender.domain.delivery.unusable_reply`): the single-use token is most likely spent.
* **At most one paid push per event**: if the channel's ``reply_fallback`` is ``push`` and the group's token
  is stale or refused, the group is pushed as one push (one billable message) with a retry key derived from
  the group (:func:`~tagline_sender.domain.replies.group_retry_key`) and one quota hold, whichever member
  leads the attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from tagline_contracts.envelope import new_event_id
from tagline_contracts.members import FollowState
from tagline_contracts.sending import SendCategory, SendMethod, SendOutcome, SendResult
from tagline_platform.errors import InfrastructureUnavailable
from tagline_platform.tasks import cancel_all, utc_now
from tagline_sender.adapters.mongo import Doc, SenderStore
from tagline_sender.domain.delivery import (
    Answer,
    AnswerKind,
    Attempted,
    Decision,
    DeliveryState,
    QuotaAction,
    RetryPolicy,
    decide,
    unusable_reply,
)
from tagline_sender.domain.pricing import Plan, PlanName, charge
from tagline_sender.domain.ratelimit import RateLimit, SlidingWindow
from tagline_sender.domain.replies import LATE_REASON, fit, group_retry_key
from tagline_sender.ports import LineGateway
from tagline_sender.quota import Hold, QuotaKeeper
from tagline_sender.settings import ChannelConfig

log = logging.getLogger("tagline.sender.dispatcher")

Clock = Callable[[], datetime]
ResultPublisher = Callable[[str, str, SendResult], Awaitable[None]]  # (channel, event_id, result)
ReplyLeftOut = Callable[[str, str], None]  # (channel, why: "late" | "over_limit"): a reply request not sent


@dataclass
class Call:
    """One LINE call and the deliveries it carries, all claimed with ``token``, in arrival order.

    ``docs[0]`` leads: its attempts, ambiguity, hold and recipients stand for the call. A reply group's call
    uses the group's retry key and quota hold (the same whichever member leads), a single delivery its own.
    """

    token: str
    docs: list[Doc]
    group_id: str | None = None
    messages: list[Any] = field(default_factory=list)

    @property
    def lead(self) -> Doc:
        return self.docs[0]

    @property
    def retry_key(self) -> str:
        return group_retry_key(self.group_id) if self.group_id else str(self.lead["retry_key"])

    @property
    def hold_key(self) -> str:
        return self.group_id or str(self.lead["_id"])


@dataclass(frozen=True)
class DispatchConfig:
    concurrency: int
    poll_interval_s: float
    lease: timedelta
    reply_ttl: timedelta
    retry: RetryPolicy
    rate_limit_safety: float
    blocked_cache_s: float = 5.0


class RateLimiter:
    """This instance's sliding windows per (channel, endpoint), resized when its partition share changes."""

    def __init__(self, limits: dict[str, RateLimit], safety: float) -> None:
        self._limits = limits
        self._safety = safety
        self._share = (1, 1)
        self._windows: dict[tuple[str, str], SlidingWindow] = {}

    def set_share(self, owned: int, total: int) -> None:
        self._share = (owned, total)
        for (_, endpoint), window in self._windows.items():
            window.rate = self._rate(endpoint)

    def _rate(self, endpoint: str) -> RateLimit:
        return self._limits[endpoint].share(*self._share, self._safety)

    async def acquire(self, channel_id: str, endpoint: str) -> None:
        window = self._windows.get((channel_id, endpoint))
        if window is None:
            window = self._windows[(channel_id, endpoint)] = SlidingWindow(self._rate(endpoint))
        loop = asyncio.get_running_loop()
        while (wait := window.try_acquire(loop.time())) > 0:  # noqa: ASYNC110 - sleep until a slot frees
            await asyncio.sleep(wait)


class Dispatcher:
    def __init__(  # noqa: PLR0917 - the composition root passes the collaborators in order
        self,
        store: SenderStore,
        quota: QuotaKeeper,
        line: LineGateway,
        channels: dict[str, ChannelConfig],
        plans: dict[PlanName, Plan],
        limiter: RateLimiter,
        publish: ResultPublisher,
        config: DispatchConfig,
        *,
        clock: Clock = utc_now,
        instance_id: str = "",
        on_outcome: Callable[[str, SendOutcome, int], None] | None = None,
        on_reply_left_out: ReplyLeftOut | None = None,
    ) -> None:
        self._store = store
        self._quota = quota
        self._line = line
        self._channels = channels
        self._plans = plans
        self._limiter = limiter
        self._publish = publish
        self._config = config
        self._clock = clock
        self._instance = instance_id or uuid.uuid4().hex[:8]
        self._on_outcome = on_outcome
        self._on_reply_left_out = on_reply_left_out
        self._rng = random.Random()  # noqa: S311 - jitter, not security
        self._partitions: frozenset[int] = frozenset()
        self._publishing: set[str] = set()
        """Deliveries whose result this instance is publishing now (the poller leaves them alone)."""
        self._unpublished_seen: set[str] = set()
        self._heap: list[tuple[int, float, int, str, str | None]] = []
        self._queued: set[str] = set()
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._poller_task: asyncio.Task[None] | None = None
        self._sends: dict[str, Doc] = {}
        self._blocked: dict[str, tuple[float, set[str]]] = {}
        self._busy = 0
        self._inflight: set[str] = (
            set()
        )  # claimed or being claimed here: the poller must not queue them again
        self._blocked_locks: dict[str, asyncio.Lock] = {}
        self._stopping = False

    # ---- ownership ----------------------------------------------------------------------------------
    def set_partitions(self, owned: set[int], total: int) -> None:
        self._partitions = frozenset(owned)
        self._limiter.set_share(len(owned), total)
        log.info("partitions assigned", extra={"partitions": sorted(owned), "total": total})
        self._wakeup.set()

    @property
    def partitions(self) -> frozenset[int]:
        return self._partitions

    @property
    def idle(self) -> bool:
        return not self._heap and self._busy == 0

    # ---- queue ----------------------------------------------------------------------------------------
    def enqueue(self, delivery_id: str, category: str, due: datetime, reply_group: str | None = None) -> None:
        if delivery_id in self._queued or delivery_id in self._inflight:
            return
        self._queued.add(delivery_id)
        priority = 0 if category == SendCategory.TRANSACTIONAL.value else 1
        heapq.heappush(self._heap, (priority, due.timestamp(), next(self._seq), delivery_id, reply_group))
        self._wakeup.set()

    async def _next(self) -> tuple[str, str | None] | None:
        """The next due delivery and its reply group; ``None`` once :meth:`stop` was called."""
        while not self._stopping:
            now = self._clock().timestamp()
            for index, (_, due, _, _, _) in enumerate(self._heap):
                if due <= now:
                    item = self._heap.pop(index)
                    heapq.heapify(self._heap)
                    self._queued.discard(item[3])
                    return item[3], item[4]
            self._wakeup.clear()
            soonest = min((item[1] for item in self._heap), default=now + self._config.poll_interval_s)
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation (CPython gh-86296)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.01, min(1.0, soonest - now))):
                    await self._wakeup.wait()
        return None

    # ---- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        self._stopping = False
        self._workers = [
            asyncio.create_task(self._worker(), name=f"sender-worker-{i}")
            for i in range(self._config.concurrency)
        ]
        self._poller_task = asyncio.create_task(self._poller(), name="sender-poller")

    async def stop(self, grace_s: float = 0.0) -> None:
        """Take no more deliveries; let attempts in progress finish for up to ``grace_s``, then cancel them.

        A cancelled attempt is not lost: its lease runs out and it is tried again (same retry key)."""
        self._stopping = True
        self._wakeup.set()  # idle workers return
        tasks = [*self._workers, *([self._poller_task] if self._poller_task else [])]
        if self._poller_task is not None:
            self._poller_task.cancel()
        if self._workers and grace_s > 0:
            _, late = await asyncio.wait(self._workers, timeout=grace_s)
            if late:
                log.warning("delivery attempts cut short by the shutdown", extra={"attempts": len(late)})
        await cancel_all(tasks)  # bounded: a task that swallowed its cancellation is named and left behind
        self._workers, self._poller_task = [], None

    async def _worker(self) -> None:
        while True:
            due = await self._next()
            if due is None:
                return
            delivery_id, reply_group = due
            self._busy += 1
            self._inflight.add(delivery_id)
            try:
                await self.process(delivery_id, reply_group)
            except asyncio.CancelledError:
                raise
            except Exception:  # the lease expires and the poller hands the delivery out again
                log.exception("delivery attempt failed", extra={"delivery_id": delivery_id})
            finally:
                self._inflight.discard(delivery_id)
                self._busy -= 1

    async def _poller(self) -> None:
        while True:
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("poll failed")
            await asyncio.sleep(self._config.poll_interval_s)

    async def poll_once(self) -> None:
        """Recover expired leases, queue what is due soon, republish unpublished results."""
        owned = sorted(self._partitions)
        if not owned:
            return
        now = self._clock()
        await self._store.release_expired_leases(owned, now)
        horizon = now + timedelta(seconds=self._config.poll_interval_s)
        for doc in await self._store.due(owned, horizon, limit=5_000):
            self.enqueue(doc["_id"], doc["category"], doc["next_attempt_at"], doc.get("reply_group"))
        # A result is republished only when it was already unpublished at the previous poll and this instance
        # is not publishing it right now: the dispatcher publishes every result itself just after writing it,
        # and a poll racing that publish would otherwise send it twice.
        unpublished = await self._store.unpublished(owned, limit=1_000)
        previous, self._unpublished_seen = self._unpublished_seen, {doc["_id"] for doc in unpublished}
        for doc in unpublished:
            if doc["_id"] in previous and doc["_id"] not in self._publishing:
                await self._publish_pending(doc)

    # ---- one attempt -----------------------------------------------------------------------------------
    async def process(self, delivery_id: str, reply_group: str | None = None) -> None:
        """One attempt at one delivery (with the rest of its reply group, if it has one), if it is still
        pending and due (else another worker has it)."""
        now = self._clock()
        token = uuid.uuid4().hex
        if reply_group is None:
            doc = await self._store.claim(delivery_id, now, now + self._config.lease, token)
            call = None if doc is None else Call(token, [doc])
        else:
            call = await self._claim_group(delivery_id, reply_group, now, token)
        if call is not None:
            await self._attempt(call, now)

    async def _claim_group(self, delivery_id: str, group_id: str, now: datetime, token: str) -> Call | None:
        """Claim a reply group's call, if this worker can lead it; ``None`` if there is nothing to do now.

        The group's call is led by whoever claims its lead delivery (:meth:`_claim_lead`): a claim is one
        atomic conditional update, so one worker leads and the others leave the group alone. The leader
        claims every other member by ``_id`` (``due=False``), seals the group if it is still open (a request
        that joins after that is late) and, on the group's first call, decides it (:meth:`_seal`). Until the
        gather window has passed (a request that joined restarted it) nothing is claimed: the member that
        came due waits for the group's time, which the member that joined last is queued for. A later call (a
        retry after no answer, a lease that ran out, a push fallback) claims the included members again. A
        member that is not in the decided call arrived too late: it fails, it is never pushed (its token is
        spent).
        """
        lease = now + self._config.lease
        group = await self._store.get_reply_group(group_id)
        if group is None:  # stored by a version that joined after storing, and not joined: a group of one
            doc = await self._store.claim(delivery_id, now, lease, token)
            return Call(token, [doc], group_id) if doc is not None else None
        if "included" in group and delivery_id not in group["included"]:
            await self._fail_late(delivery_id, now, lease, token)
            return None
        if await self._not_yet(delivery_id, group, now):
            return None
        decided = "included" in group
        members = list(group["included"] if decided else group["members"])
        lead = await self._claim_lead(members, now, lease, token, due=decided)
        if lead is None:
            return None  # another worker leads this call, or it is not due yet
        if not group["sealed"]:
            sealed = await self._close(group_id, lead, token, now)
            if sealed is None:
                return None
            group, members = sealed, list(sealed["members"])
        claimed = {lead["_id"]: lead}
        for member in members:
            if member not in claimed:
                doc = await self._store.claim(member, now, lease, token, due=False)
                if doc is not None:
                    claimed[member] = doc
        docs = [claimed[m] for m in members if m in claimed]
        left_out: list[tuple[Doc, str, str | None]] = []
        if "included" not in group:
            docs, left_out = await self._seal(group_id, docs, now)
        for doc, reason, label in left_out:
            await self._finish(doc, token, DeliveryState.FAILED, SendOutcome.FAILED, reason=reason)
            if label and self._on_reply_left_out:
                self._on_reply_left_out(doc["channel_id"], label)
        return Call(token, docs, group_id) if docs else None

    async def _fail_late(self, delivery_id: str, now: datetime, lease: datetime, token: str) -> None:
        """A request that is not in its group's decided call: it arrived after the reply was sent."""
        late = await self._store.claim(delivery_id, now, lease, token)
        if late is not None:
            await self._finish(late, token, DeliveryState.FAILED, SendOutcome.FAILED, reason=LATE_REASON)
            if self._on_reply_left_out:
                self._on_reply_left_out(late["channel_id"], "late")

    async def _not_yet(self, delivery_id: str, group: Doc, now: datetime) -> bool:
        """Whether the group cannot be sent now; the member that came due then waits (unclaimed)."""
        if "included" not in group and delivery_id not in group["members"]:
            # Its join found the group sealed, and the leader is deciding the call: failed once it is decided.
            await self._store.wait_until(delivery_id, now + timedelta(seconds=self._config.poll_interval_s))
            return True
        if not group["sealed"] and group["due_at"] > now:
            await self._store.wait_until(delivery_id, group["due_at"])
            return True
        return False

    async def _close(self, group_id: str, lead: Doc, token: str, now: datetime) -> Doc | None:
        """Seal the open group whose lead this worker claimed; the sealed group, or ``None`` (the lead handed
        back) if a request joined after it came due and restarted the window."""
        closed = await self._store.close_reply_group(group_id, now)
        if closed is not None:
            return closed
        group = await self._store.get_reply_group(group_id)
        if group is not None and group["sealed"]:
            return group  # sealed by an earlier leader whose lease ran out before it decided the call
        back = {"state": DeliveryState.PENDING.value, "next_attempt_at": group["due_at"] if group else now}
        await self._store.transition(lead["_id"], token, back, ("claim", "lease_until"))
        return None

    async def _claim_lead(
        self, members: list[str], now: datetime, lease: datetime, token: str, *, due: bool
    ) -> Doc | None:
        """Claim the first member of the call that is not finished (usually the first); ``None`` if it is
        claimed by another worker, or not due yet. Members finish together, so one left behind by a crash
        between their writes is led by the next."""
        for member in members:
            doc = await self._store.claim(member, now, lease, token, due=due)
            if doc is not None:
                return doc
            if not await self._store.is_final(member):
                return None
        return None

    async def _seal(
        self, group_id: str, docs: list[Doc], now: datetime
    ) -> tuple[list[Doc], list[tuple[Doc, str, str | None]]]:
        """Decide the group's reply call: members that can be sent (not expired…), in arrival order, as many
        whole requests as fit in LINE's five message objects (:func:`~tagline_sender.domain.replies.fit`).
        Returns the call's members and the members left out, with why."""
        left_out: list[tuple[Doc, str, str | None]] = []
        usable: list[Doc] = []
        for doc in docs:
            reason = self._unsendable(doc, now)
            if reason is None:
                usable.append(doc)
            else:
                left_out.append((doc, reason, None))
        fitted = fit([(doc["_id"], len(await self._messages(doc))) for doc in usable])
        by_id = {doc["_id"]: doc for doc in usable}
        left_out += [(by_id[member], why, "over_limit") for member, why in fitted.excluded]
        await self._store.seal_reply_group(
            group_id, fitted.included, [doc["_id"] for doc, _, _ in left_out], now
        )
        return [by_id[member] for member in fitted.included], left_out

    def _unsendable(self, doc: Doc, now: datetime) -> str | None:
        """Why this delivery can no longer be sent at all, if it cannot."""
        if doc.get("unsendable"):
            return str(doc["unsendable"])
        if doc["channel_id"] not in self._channels:
            return "unknown channel"
        if doc.get("expires_at") and now >= doc["expires_at"]:
            return "expired before it could be sent"
        return None

    async def _attempt(self, call: Call, now: datetime) -> None:
        """Reserve the quota (push, multicast), wait for the rate limit, call LINE, record the answer."""
        hold = _hold(call.lead)
        reasons = [(doc, self._unsendable(doc, now)) for doc in call.docs]
        failed = [(doc, reason) for doc, reason in reasons if reason is not None]
        call.docs = [doc for doc, reason in reasons if reason is None]
        if hold is not None and not call.docs:
            # nobody is left to carry the hold; an unanswered attempt may have been delivered: keep it counted
            await self._quota.settle(hold, used=any(doc.get("ambiguous") for doc, _ in failed))
        for doc, reason in failed:
            await self._finish(doc, call.token, DeliveryState.FAILED, SendOutcome.FAILED, reason=reason)
        if not call.docs:
            return
        lead = call.lead
        config = self._channels[lead["channel_id"]]
        method = SendMethod(lead["method"])
        recipients = await self._store.get_recipients(lead["_id"])
        if method is SendMethod.REPLY and now - lead["reply_received_at"] >= self._config.reply_ttl:
            # the token went stale while waiting: the channel's reply_fallback decides
            decision = unusable_reply(
                config.reply_fallback,
                ambiguous_before=any(doc.get("ambiguous") for doc in call.docs),
                why=f"stale (older than the {self._config.reply_ttl.total_seconds():g} s a token is tried)",
                now=now,
            )
            if decision.switch_to is None:
                await self._apply(call, decision, method=method, recipients=recipients, fields={})
                return
            method = decision.switch_to
        if method is not SendMethod.REPLY and hold is None:
            prepared = await self._reserve(call, method, recipients, now)
            if prepared is None:
                return
            method, recipients, hold = prepared
        call.messages = [message for doc in call.docs for message in await self._messages(doc)]
        body = self._body(method, recipients, call.messages, lead)
        await self._limiter.acquire(lead["channel_id"], method.value)
        started = [doc["first_attempt_at"] for doc in call.docs if doc.get("first_attempt_at")]
        first_attempt_at = min(started) if started else self._clock()
        answer = await self._line.send(
            method,
            config.access_token.get_secret_value(),
            body,
            None if method is SendMethod.REPLY else call.retry_key,
        )
        await self._record(call, method, recipients, hold, answer, first_attempt_at)

    async def _reserve(
        self, call: Call, method: SendMethod, recipients: list[str], now: datetime
    ) -> tuple[SendMethod, list[str], Hold] | None:
        """Drop blocked recipients, hold their quota; ``None`` if the call was finished or deferred."""
        lead = call.lead
        recipients = await self._without_blocked(lead["channel_id"], lead, recipients)
        if not recipients:
            for doc in call.docs:
                await self._finish(
                    doc,
                    call.token,
                    DeliveryState.FAILED,
                    SendOutcome.FAILED,
                    reason="every recipient has blocked the account",
                )
            return None
        if method is SendMethod.MULTICAST and len(recipients) == 1:
            method = SendMethod.PUSH
        transactional = any(doc["category"] == SendCategory.TRANSACTIONAL.value for doc in call.docs)
        category = SendCategory.TRANSACTIONAL if transactional else SendCategory.MARKETING
        hold = await self._quota.reserve(lead["channel_id"], call.hold_key, len(recipients), category, now)
        if hold is None:
            for doc in call.docs:
                await self._defer(doc, call.token, "monthly quota (after transactional headroom) is used up")
            return None
        held = {"ledger_id": hold.ledger_id, "hold": hold.hold, "n": hold.n}
        for doc in call.docs:
            if not await self._store.keep_hold(doc["_id"], call.token, held, method.value):
                # Our lease ran out and another worker claimed it: it owns the same hold (one per call) and
                # settles it; calling LINE from here too would only risk counting the quota twice.
                return None
        return method, recipients, hold

    async def _record(  # noqa: PLR0917 - private; one call site
        self,
        call: Call,
        method: SendMethod,
        recipients: list[str],
        hold: Hold | None,
        answer: Answer,
        first_attempt_at: datetime,
    ) -> None:
        """Apply LINE's answer: settle the quota hold, then move every delivery of the call on."""
        now = self._clock()
        attempts = max(int(doc.get("attempts", 0)) for doc in call.docs) + 1
        ambiguous = any(bool(doc.get("ambiguous")) for doc in call.docs)
        decision = decide(
            Attempted(
                method,
                attempts,
                first_attempt_at,
                ambiguous,
                self._channels[call.lead["channel_id"]].reply_fallback,
            ),
            answer,
            now,
            self._config.retry,
            self._rng,
        )
        used_before = None
        if hold is not None and decision.quota is not QuotaAction.KEEP:
            used_before = await self._quota.settle(hold, used=decision.quota is QuotaAction.CONFIRM)
            if decision.quota is QuotaAction.EXHAUSTED:
                await self._quota.mark_exhausted(hold.ledger_id)
        fields = {
            "attempts": attempts,
            "first_attempt_at": first_attempt_at,
            "last_attempt_at": now,
            "last_answer": _answer_doc(answer),
            "ambiguous": ambiguous or decision.ambiguous,
            "method": (decision.switch_to or method).value,
        }
        await self._apply(
            call,
            decision,
            method=method,
            recipients=recipients,
            hold=hold,
            answer=answer,
            used_before=used_before,
            fields=fields,
        )

    async def _apply(
        self,
        call: Call,
        decision: Decision,
        *,
        method: SendMethod,
        recipients: list[str],
        fields: Doc,
        hold: Hold | None = None,
        answer: Answer | None = None,
        used_before: int | None = None,
    ) -> None:
        """Move every delivery of the call to the decided state (claim-token predicate). Each gets its own
        result; the billable messages and their cost are on the lead's only (one call, counted once)."""
        now = self._clock()
        unset = () if hold is not None and decision.quota is QuotaAction.KEEP else ("hold",)
        if decision.state is DeliveryState.PENDING:
            due = decision.next_attempt_at or now
            for doc in call.docs:
                pending = {**fields, "state": DeliveryState.PENDING.value, "next_attempt_at": due}
                await self._store.transition(doc["_id"], call.token, pending, ("claim", *unset))
                if due - now < timedelta(seconds=self._config.poll_interval_s):
                    self.enqueue(doc["_id"], doc["category"], due, doc.get("reply_group"))
            return
        if decision.state is DeliveryState.DEFERRED:
            for doc in call.docs:
                await self._defer(doc, call.token, decision.reason or "deferred", extra=fields, unset=unset)
            return
        counted = len(recipients) if hold is not None and decision.quota is QuotaAction.CONFIRM else 0
        cost = self._cost(call.lead["channel_id"], used_before, counted)
        reason = decision.reason
        if reason is None and len(call.docs) > 1:
            reason = f"one {method.value} call with {len(call.docs) - 1} other request(s) for the same event"
        for index, doc in enumerate(call.docs):
            await self._finish(
                doc,
                call.token,
                decision.state,
                decision.outcome or SendOutcome.FAILED,
                reason=reason,
                answer=answer,
                method=method,
                recipients=recipients,
                counted=counted if index == 0 else 0,
                cost=cost if index == 0 else 0.0,
                extra=fields,
                unset=unset,
            )

    # ---- helpers ---------------------------------------------------------------------------------------
    async def _send(self, send_id: str) -> Doc:
        send = self._sends.get(send_id)
        if send is None:
            send = await self._store.get_send(send_id)
            if send is None:
                raise InfrastructureUnavailable(f"send {send_id} is missing")
            if len(self._sends) > 10_000:
                self._sends.clear()
            self._sends[send_id] = send
        return send

    async def _messages(self, doc: Doc) -> list[Any]:
        return list((await self._send(doc["send_id"]))["request"]["messages"])

    async def _without_blocked(self, channel_id: str, lead: Doc, recipients: list[str]) -> list[str]:
        """The recipients who have not blocked the channel. Planning left out those who had; of those who
        blocked since, ``follow_feed`` knows (the changes since the delivery was planned, a few equality
        queries, cached). A delivery older than the feed keeps checks the channel's blocked set instead
        (one indexed query reading every blocked member, refreshed at most every ``blocked_cache_s``)."""
        now = self._clock()
        states = await self._store.follow_states_since(
            channel_id, lead["created_at"], now, fresh_s=self._config.blocked_cache_s
        )
        if states is not None:
            blocked = {user for user, state in states.items() if state == FollowState.BLOCKED.value}
        else:
            blocked = await self._blocked_set(channel_id)
        if not blocked.intersection(recipients):
            return recipients
        kept = [u for u in recipients if u not in blocked]
        await self._store.set_recipients(lead["_id"], kept)
        return kept

    async def _blocked_set(self, channel_id: str) -> set[str]:
        loop_now = asyncio.get_running_loop().time()
        async with self._blocked_locks.setdefault(channel_id, asyncio.Lock()):  # one refresh at a time
            cached = self._blocked.get(channel_id)
            if cached is None or loop_now - cached[0] > self._config.blocked_cache_s:
                cached = self._blocked[channel_id] = (loop_now, await self._store.blocked_ids(channel_id))
            return cached[1]

    def _body(
        self, method: SendMethod, recipients: list[str], messages: list[Any], doc: Doc
    ) -> dict[str, Any]:
        if method is SendMethod.REPLY:
            return {"replyToken": doc["reply_token"], "messages": messages}
        if method is SendMethod.PUSH:
            return {"to": recipients[0], "messages": messages}
        return {"to": recipients, "messages": messages}

    def _cost(self, channel_id: str, used_before: int | None, counted: int) -> float:
        if not counted or used_before is None or channel_id not in self._channels:
            return 0.0
        plan = self._plans[self._channels[channel_id].plan]
        return float(charge(plan, used_before, counted).cost_ntd.quantize(Decimal("0.001")))

    async def _defer(
        self, doc: Doc, token: str, reason: str, *, extra: Doc | None = None, unset: tuple[str, ...] = ()
    ) -> None:
        fields: Doc = {**(extra or {}), "state": DeliveryState.DEFERRED.value, "deferred_reason": reason}
        result = None
        if not doc.get("deferred_reported"):
            fields["deferred_reported"] = True
            result = self._result(doc, SendOutcome.DEFERRED, reason=reason)
            fields["pending_result"] = result
        if not await self._store.transition(doc["_id"], token, fields, ("claim", *unset)):
            return
        await self._store.count_deferred(doc["channel_id"], 1)
        if result:
            await self._publish_pending({**doc, "pending_result": result})

    async def _finish(
        self,
        doc: Doc,
        token: str,
        state: DeliveryState,
        outcome: SendOutcome,
        *,
        reason: str | None = None,
        answer: Answer | None = None,
        method: SendMethod | None = None,
        recipients: list[str] | None = None,
        counted: int = 0,
        cost: float = 0.0,
        extra: Doc | None = None,
        unset: tuple[str, ...] = ("hold",),
    ) -> None:
        result = self._result(
            doc,
            outcome,
            reason=reason,
            answer=answer,
            method=method,
            recipients=recipients,
            counted=counted,
            cost=cost,
        )
        fields = {
            **(extra or {}),
            "state": state.value,
            "outcome": outcome.value,
            "reason": reason,
            "finished_at": self._clock(),
            "messages_counted": counted,
            "cost_ntd": cost,
            "pending_result": result,
        }
        if await self._store.transition(doc["_id"], token, fields, ("claim", *unset)):
            await self._publish_pending({**doc, "pending_result": result})

    def _result(
        self,
        doc: Doc,
        outcome: SendOutcome,
        *,
        reason: str | None = None,
        answer: Answer | None = None,
        method: SendMethod | None = None,
        recipients: list[str] | None = None,
        counted: int = 0,
        cost: float = 0.0,
    ) -> Doc:
        result = SendResult(
            request_id=doc["key"],
            batch=doc["batch"],
            outcome=outcome,
            method=method or SendMethod(doc["method"]),
            category=SendCategory(doc["category"]),
            user_ids=recipients if recipients is not None else [],
            recipients=len(recipients) if recipients is not None else doc.get("recipient_count", 0),
            messages_counted=counted,
            cost_ntd=cost,
            reason=reason,
            line_error=answer.body if answer and answer.kind is AnswerKind.REJECTED else None,
            line_request_id=answer.request_id if answer else None,
            labels=doc.get("labels", {}),
        )
        return {"event_id": new_event_id(), "result": result.model_dump(mode="json")}

    async def _publish_pending(self, doc: Doc) -> None:
        pending = doc["pending_result"]
        result = SendResult.model_validate(pending["result"])
        self._publishing.add(doc["_id"])
        try:
            await self._publish(doc["channel_id"], pending["event_id"], result)
            await self._store.mark_result_published(doc["_id"], pending["event_id"])
        finally:
            self._publishing.discard(doc["_id"])
        if self._on_outcome:
            self._on_outcome(doc["channel_id"], result.outcome, result.messages_counted)


def _hold(doc: Doc) -> Hold | None:
    return Hold(**doc["hold"]) if doc.get("hold") else None


def _answer_doc(answer: Answer) -> Doc:
    return {
        "kind": answer.kind.value,
        "status": answer.status,
        "body": answer.body,
        "request_id": answer.request_id,
        "detail": answer.detail,
    }
