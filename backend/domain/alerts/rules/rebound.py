"""Rebound and relapse after rapid-acting treatment sessions (clinical-spec §2.4).

Per trajectory key (one instrument, one recall window: scores of different keys never mix) and per
session k, with REF = B0 (course baseline, default) or the pre-session score B_k:

- window W_k = [session start, next session start), at most `window_max_days` long;
- nadir N_k = the lowest *complete* score in W_k at least `nadir_min_hours` after the start, as
  known at each score's time; gain G_k = REF - N_k; rise R_t = S_t - N_k; fraction F_t = R_t/G_k;
- eligible when G_k >= max(min_gain_abs, min_gain_rel x REF), else NON_RESPONSE_SESSION at the
  first complete score from day `nonresponse_check_day` on;
- REBOUND_CANDIDATE when R_t >= min_rise_abs and F_t >= min_fraction; REBOUND_CONFIRMED when the
  previous complete score after the nadir was a candidate too, 48 h-15 d earlier (the second may
  fall after W_k's 28 days if no new session has started); FULL_RETURN when S_t >= REF - margin.

Course-level events, over all scores since the first session: LOSS_OF_RESPONSE (response met,
then above response_fraction x B0 at two consecutive complete scores 48 h-15 d apart), RELAPSE_LIKE
(remission met, then >= relapse_threshold at two consecutive complete scores 5-15 d apart, or a
clinician-entered hospitalisation or suicide attempt), SEVERE_SCORE (any score at or above
`severe_threshold` after the course began; a baseline taken to decide on treatment is not one).
A LOSS_OF_RESPONSE pair never spans a session: it takes the confirmation's gap rules, whose pair
is "both in W_k, or the second before the next session". A RELAPSE_LIKE pair may: §2.4 gives it
its own 5-15 d gap and no window, as SUSTAIN-1 counted relapse during maintenance dosing, where
weekly pre-dose scores always have a session between them.

Data quality: prorated or partially missing scores (`ScoredResponse.complete` is false: a
domain-maxima total with an item unanswered is not prorated, but is partial) never set the nadir,
never serve as a reference, never confirm and never count as one of a pair; such a score may be a
REBOUND_CANDIDATE and may be a SEVERE_SCORE (§1.1, §1.4, §2.4).
Suicide items are handled by `suicidality` and never wait for anything here (§2.4, §5.3 rule 7).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from backend.domain.alerts.candidate import (
    AlertCandidate,
    Evidence,
    ScoreEvidence,
    score_evidence,
)
from backend.domain.alerts.parameters import AlertParameters, ReboundEvent, ReboundParameters
from backend.domain.alerts.raising import raise_alert
from backend.domain.alerts.timeline import (
    CourseBaseline,
    PatientTimeline,
    ScoredResponse,
    TreatmentSession,
    course_baseline,
    in_order,
    sessions_in_order,
)

# 1.1.0: a RELAPSE_LIKE pair may span a session. Each alert keeps the version that raised it, so
# a research export tells the two apart.
# 1.2.0: partially missing domain-maxima scores (QIDS-SR16) no longer count as complete (§2.4).
RULE_ID = "rebound@1.2.0"


@dataclass(frozen=True)
class _Reference:
    total: int
    evidence: ScoreEvidence


@dataclass(frozen=True)
class _Trajectory:
    """One trajectory key's scores and parameters, and how to raise an alert for it."""

    timeline: PatientTimeline
    parameters: AlertParameters
    key: str
    rule: ReboundParameters
    scores: list[ScoredResponse]
    sessions: list[TreatmentSession]
    baseline: CourseBaseline | None

    def alert(
        self,
        kind: ReboundEvent,
        trigger: ScoredResponse,
        scores: list[ScoreEvidence],
        session_ids: tuple[str, ...] = (),
        measures: dict[str, int | float | str | None] | None = None,
        occurrence: str | None = None,
    ) -> AlertCandidate:
        return raise_alert(
            patient_id=self.timeline.patient_id,
            kind=kind,
            severity=self.parameters.rebound_severity[kind],
            trigger=occurrence or f"{self.key}:{trigger.id}",
            triggered_at=trigger.authored,
            rule_id=RULE_ID,
            parameters=self.parameters,
            evidence=Evidence(
                scores=tuple(scores),
                session_ids=session_ids,
                measures={"trajectory_key": self.key, **(measures or {})},
            ),
        )


def rebound_alerts(
    timeline: PatientTimeline, parameters: AlertParameters, now: datetime
) -> list[AlertCandidate]:
    sessions = sessions_in_order(timeline.sessions)
    alerts = _clinical_event_alerts(timeline, parameters, now)
    if not sessions:
        return alerts
    responses = in_order(timeline.responses)  # once, not once per trajectory key
    for key in sorted(parameters.rebound):
        rule = parameters.rebound[key]
        scores = [
            r
            for r in responses
            if r.trajectory_key == key and r.total is not None and r.authored <= now
        ]
        if not scores:
            continue
        trajectory = _Trajectory(
            timeline=timeline,
            parameters=parameters,
            key=key,
            rule=rule,
            scores=scores,
            sessions=sessions,
            baseline=course_baseline(timeline, key, within_days=rule.baseline_within_days),
        )
        for index in range(len(sessions)):
            alerts.extend(_window_alerts(trajectory, index))
        alerts.extend(_severe_score_alerts(trajectory))
        alerts.extend(_loss_of_response_alerts(trajectory))
        alerts.extend(_relapse_alerts(trajectory))
    return alerts


def _total(response: ScoredResponse) -> int:
    assert response.total is not None  # only scored responses enter a trajectory
    return response.total


def _reference(trajectory: _Trajectory, session: TreatmentSession) -> _Reference | None:
    rule = trajectory.rule
    if rule.reference == "course_baseline":
        baseline = trajectory.baseline
        if baseline is None:
            return None
        return _Reference(
            total=baseline.total,
            evidence=ScoreEvidence(
                response_id=baseline.response_id,
                role="reference",
                trajectory_key=trajectory.key,
                authored=baseline.authored,
                total=baseline.total,
                prorated=False,
                partial=baseline.partial,
            ),
        )
    earliest = session.start - timedelta(hours=rule.pre_session_within_hours)
    before = [s for s in trajectory.scores if s.complete and earliest <= s.authored < session.start]
    if not before:
        return None
    return _Reference(total=_total(before[-1]), evidence=score_evidence(before[-1], "reference"))


def _window_alerts(trajectory: _Trajectory, index: int) -> list[AlertCandidate]:
    rule = trajectory.rule
    session = trajectory.sessions[index]
    following = trajectory.sessions[index + 1] if index + 1 < len(trajectory.sessions) else None
    window_end = session.start + timedelta(days=rule.window_max_days)
    if following is not None:
        window_end = min(window_end, following.start)
    reference = _reference(trajectory, session)
    if reference is None:
        return []
    ref = reference.total
    opens = session.start + timedelta(hours=rule.nadir_min_hours)
    check_day = session.start + timedelta(days=rule.nonresponse_check_day)
    threshold = max(rule.min_gain_abs or 0, rule.min_gain_rel * ref)

    alerts: list[AlertCandidate] = []
    nadir: ScoredResponse | None = None
    previous: ScoredResponse | None = None  # last complete score after the nadir
    was_candidate: dict[str, bool] = {}
    nonresponse_checked = False

    def measures(score: ScoredResponse, gain: int) -> dict[str, int | float | str | None]:
        assert nadir is not None
        rise = _total(score) - _total(nadir)
        return {
            "reference": ref,
            "nadir": _total(nadir),
            "gain": gain,
            "rise": rise,
            "fraction": rise / gain,
        }

    def is_candidate(score: ScoredResponse, gain: int) -> bool:
        assert nadir is not None
        rise = _total(score) - _total(nadir)
        return (rule.min_rise_abs is None or rise >= rule.min_rise_abs) and (
            rise / gain >= rule.min_fraction
        )

    def confirms(score: ScoredResponse) -> bool:
        if previous is None or not was_candidate.get(previous.id, False):
            return False
        gap = score.authored - previous.authored
        return (
            timedelta(hours=rule.confirm_min_gap_h) <= gap <= timedelta(days=rule.confirm_max_gap_d)
        )

    in_window = [s for s in trajectory.scores if opens <= s.authored < window_end]
    for score in in_window:
        if score.complete and (nadir is None or _total(score) < _total(nadir)):
            nadir, previous = score, None
        if nadir is None:
            continue
        gain = ref - _total(nadir)
        eligible = gain > 0 and gain >= threshold
        if score.complete and not nonresponse_checked and score.authored >= check_day:
            nonresponse_checked = True
            if not eligible:
                alerts.append(
                    trajectory.alert(
                        "NON_RESPONSE_SESSION",
                        score,
                        [reference.evidence, score_evidence(nadir, "nadir")],
                        (session.id,),
                        {"reference": ref, "nadir": _total(nadir), "gain": gain},
                        occurrence=f"{trajectory.key}:{session.id}",
                    )
                )
        if not eligible or score is nadir:
            continue
        evidence = [
            reference.evidence,
            score_evidence(nadir, "nadir"),
            score_evidence(score, "score"),
        ]
        if score.complete and _total(score) >= ref - rule.full_return_margin:
            alerts.append(
                trajectory.alert(
                    "FULL_RETURN", score, evidence, (session.id,), measures(score, gain)
                )
            )
        candidate = is_candidate(score, gain)
        if candidate:
            if score.complete and confirms(score):
                assert previous is not None
                alerts.append(
                    trajectory.alert(
                        "REBOUND_CONFIRMED",
                        score,
                        [*evidence, score_evidence(previous, "previous")],
                        (session.id,),
                        measures(score, gain),
                    )
                )
            else:
                alerts.append(
                    trajectory.alert(
                        "REBOUND_CANDIDATE", score, evidence, (session.id,), measures(score, gain)
                    )
                )
        if score.complete:
            was_candidate[score.id] = candidate
            previous = score

    # The confirming second assessment may fall after W_k's last day while no new session has
    # started (§2.4: "or the second before the next session"); the nadir is then frozen.
    if nadir is not None and (following is None or following.start > window_end):
        after = [
            s
            for s in trajectory.scores
            if s.complete
            and s.authored >= window_end
            and (following is None or s.authored < following.start)
        ]
        gain = ref - _total(nadir)
        if after and gain > 0 and gain >= threshold:
            score = after[0]
            if is_candidate(score, gain) and confirms(score):
                assert previous is not None
                alerts.append(
                    trajectory.alert(
                        "REBOUND_CONFIRMED",
                        score,
                        [
                            reference.evidence,
                            score_evidence(nadir, "nadir"),
                            score_evidence(score, "score"),
                            score_evidence(previous, "previous"),
                        ],
                        (session.id,),
                        measures(score, gain),
                    )
                )
    return alerts


def _latest_session_before(
    sessions: list[TreatmentSession], moment: datetime
) -> TreatmentSession | None:
    started = [s for s in sessions if s.start <= moment]
    return started[-1] if started else None


def _post_session(trajectory: _Trajectory, score: ScoredResponse) -> bool:
    """Measured at least `nadir_min_hours` after the session before it: a treatment effect."""
    session = _latest_session_before(trajectory.sessions, score.authored)
    return session is not None and score.authored >= session.start + timedelta(
        hours=trajectory.rule.nadir_min_hours
    )


def _consecutive_pairs(
    trajectory: _Trajectory, *, across_sessions: bool
) -> tuple[list[ScoredResponse], list[tuple[int, ScoredResponse, ScoredResponse]]]:
    """The complete scores since the course began, and (how many of them came before the pair,
    previous, current) for consecutive ones; unless `across_sessions`, only pairs no session
    start separates. The scores before a pair are a prefix of the first list: a count, not a
    copy (a copy per pair was quadratic in the course's scores)."""
    course_start = trajectory.sessions[0].start
    complete = [s for s in trajectory.scores if s.complete and s.authored >= course_start]
    pairs = []
    for i in range(1, len(complete)):
        previous, current = complete[i - 1], complete[i]
        separated = not across_sessions and any(
            previous.authored < s.start <= current.authored for s in trajectory.sessions
        )
        if not separated:
            pairs.append((i - 1, previous, current))
    return complete, pairs


def _loss_of_response_alerts(trajectory: _Trajectory) -> list[AlertCandidate]:
    rule, baseline = trajectory.rule, trajectory.baseline
    if baseline is None:
        return []
    limit = rule.response_fraction * baseline.total
    reference = ScoreEvidence(
        response_id=baseline.response_id,
        role="reference",
        trajectory_key=trajectory.key,
        authored=baseline.authored,
        total=baseline.total,
        prorated=False,
        partial=baseline.partial,
    )
    complete, pairs = _consecutive_pairs(trajectory, across_sessions=False)
    # The first response (post-session, at or below the limit) before a pair is the first of
    # all complete scores, if it comes before the pair: found once, not once per pair.
    first = next(
        (k for k, s in enumerate(complete) if _post_session(trajectory, s) and _total(s) <= limit),
        None,
    )
    if first is None:
        return []  # never responded after a session: no response to lose
    alerts = []
    for before, previous, current in pairs:
        gap = current.authored - previous.authored
        if (
            first < before
            and _total(previous) > limit
            and _total(current) > limit
            and timedelta(hours=rule.confirm_min_gap_h)
            <= gap
            <= timedelta(days=rule.confirm_max_gap_d)
        ):
            alerts.append(
                trajectory.alert(
                    "LOSS_OF_RESPONSE",
                    current,
                    [
                        reference,
                        score_evidence(complete[first], "response"),
                        score_evidence(previous, "previous"),
                        score_evidence(current, "score"),
                    ],
                    measures={"reference": baseline.total, "response_limit": limit},
                )
            )
    return alerts


def _relapse_alerts(trajectory: _Trajectory) -> list[AlertCandidate]:
    rule = trajectory.rule
    if rule.remission_at_or_below is None or rule.relapse_threshold is None:
        return []
    remission, threshold = rule.remission_at_or_below, rule.relapse_threshold
    complete, pairs = _consecutive_pairs(trajectory, across_sessions=True)
    # The scores before each pair are a prefix of `complete`, so the first remitted score is
    # found once (it was searched for again per pair: quadratic in the course's scores).
    first = next(
        (
            k
            for k, s in enumerate(complete)
            if _post_session(trajectory, s) and _total(s) <= remission
        ),
        None,
    )
    if first is None:
        return []  # never in remission after a session: nothing to relapse from
    alerts = []
    for before, previous, current in pairs:
        gap = current.authored - previous.authored
        if (
            first < before
            and _total(previous) >= threshold
            and _total(current) >= threshold
            and timedelta(days=rule.relapse_min_gap_d)
            <= gap
            <= timedelta(days=rule.relapse_max_gap_d)
        ):
            alerts.append(
                trajectory.alert(
                    "RELAPSE_LIKE",
                    current,
                    [
                        score_evidence(complete[first], "remission"),
                        score_evidence(previous, "previous"),
                        score_evidence(current, "score"),
                    ],
                    measures={"remission_at_or_below": remission, "relapse_threshold": threshold},
                )
            )
    return alerts


def _severe_score_alerts(trajectory: _Trajectory) -> list[AlertCandidate]:
    severe = trajectory.rule.severe_threshold
    if severe is None:
        return []
    course_start = trajectory.sessions[0].start
    return [
        trajectory.alert(
            "SEVERE_SCORE",
            score,
            [score_evidence(score, "score")],
            measures={"severe_threshold": severe},
        )
        for score in trajectory.scores
        if score.authored >= course_start and _total(score) >= severe
    ]


def _clinical_event_alerts(
    timeline: PatientTimeline, parameters: AlertParameters, now: datetime
) -> list[AlertCandidate]:
    # SUSTAIN-1 counted hospitalisation for worsening depression or suicide prevention, and
    # suicide attempts, as relapse whatever the scores (clinical-spec §2.3).
    return [
        raise_alert(
            patient_id=timeline.patient_id,
            kind="RELAPSE_LIKE",
            severity=parameters.rebound_severity["RELAPSE_LIKE"],
            trigger=f"event:{event.id}",
            triggered_at=event.occurred,
            rule_id=RULE_ID,
            parameters=parameters,
            evidence=Evidence(event_ids=(event.id,), measures={"event": event.kind}),
        )
        for event in timeline.clinical_events
        if event.occurred <= now
    ]
