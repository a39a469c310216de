"""Pydantic models of the fleet.yaml v1alpha1 format (docs/fleet-yaml.md).

Field names are the public interface (camelCase, as written in YAML). Checks that
need more than one field (references, expanded names) live in `checks.py` so each
problem can point at the exact key that is wrong.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from .durations import DURATION_PATTERN, check_cron, parse_duration
from .names import AGENT_NAME_PATTERN, ENV_NAME_PATTERN, NAME_PATTERN

RUNTIMES = ("claude", "codex", "gemini", "aider", "command")


def _duration(value: str) -> str:
    parse_duration(value)
    return value


Duration = Annotated[
    str,
    Field(pattern=DURATION_PATTERN, description="A duration such as 30s, 15m, 1h30m."),
    AfterValidator(_duration),
]
Cron = Annotated[str, AfterValidator(check_cron), Field(description="5-field crontab expression.")]
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=100)]


class Strict(BaseModel):
    """Unknown keys are errors; values are never coerced from the wrong type."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


class Metadata(Strict):
    name: Name = Field(description="Fleet identity; it owns every worktree, branch and session it creates.")


class Worktrees(Strict):
    root: str = Field(".fleet/worktrees", description="Directory of agent worktrees, relative to the repo.")
    branchPrefix: str | None = Field(None, description="Branch = prefix + agent name. Default: fleet/<fleet name>/.")


class Tier(Strict):
    runtime: Literal["claude", "codex", "gemini", "aider", "command"]
    model: str | None = Field(None, description="Model passed to the runtime; none for `command`.")
    maxRunning: int | None = Field(None, ge=1, description="Cap on running sessions of this tier.")
    args: list[str] = Field(default_factory=list, description="Extra runtime arguments.")
    timeout: Duration | None = Field(None, description="Maximum wall time of one session run; none = no limit.")
    stallAfter: Duration | None = Field(None, description="Stop a session that shows no progress this long "
                                                          "(default 15m).")
    maxUsdPerRun: float | None = Field(None, gt=0, description="Hard cap per run (claude: --max-budget-usd; "
                                       "others are stopped at it); also what each run reserves.")
    windows: list[Window] = Field(default_factory=list, description="Quota windows for this tier's runs.")


class Concurrency(Strict):
    maxRunning: int | None = Field(None, ge=1, description="Cap on running sessions in the whole fleet.")


class Window(Strict):
    """A quota window (subscription plans): at most `usd` or `tokens` per `every`, counted from
    the first run that ends in it; a new window starts with the first run after it ends."""

    every: Duration = Field(description="Window length, e.g. 5h.")
    usd: float | None = Field(None, gt=0, description="USD allowed per window.")
    tokens: int | None = Field(None, gt=0, description="Tokens (input, output and cache) allowed per window.")

    @model_validator(mode="after")
    def _one_limit(self) -> Window:
        if (self.usd is None) == (self.tokens is None):
            raise ValueError("a window needs exactly one of usd or tokens")
        return self


class PriceOverride(Strict):
    match: str = Field(min_length=1, description="Substring of the model id this price is for, e.g. sonnet.")
    input: float = Field(ge=0, description="USD per million uncached input tokens.")
    output: float = Field(ge=0, description="USD per million output tokens.")
    cacheRead: float | None = Field(None, ge=0, description="USD per million cache-read tokens (default input/10).")
    cacheWrite: float | None = Field(None, ge=0, description="USD per million cache-write tokens "
                                                              "(default input x 1.25).")


class Budget(Strict):
    usdPerDay: float | None = Field(None, gt=0, description="Spend per UTC day for the fleet; a cap: sessions "
                                                            "start only while it has room for their reservation.")
    perTier: dict[Name, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict, description="USD per UTC day per tier name.")
    usdPerAgentPerDay: float | None = Field(None, gt=0, description="USD per UTC day for each agent.")
    windows: list[Window] = Field(default_factory=list, description="Quota windows for the whole fleet, e.g. "
                                                                    "[{every: 5h, usd: 20}].")
    estimateUsdPerRun: float | None = Field(None, gt=0, description="What a run reserves when its tier has no "
                                            "maxUsdPerRun and no finished runs to take the median of.")
    onExhausted: Literal["pause", "stop", "continue"] = Field(
        "pause", description="Running sessions when a budget is spent: pause (stop, resume the same session when "
                             "the budget allows), stop, or continue (only new work waits).")
    prices: list[PriceOverride] = Field(default_factory=list, description="Model prices that override fleet's "
                                        "table (for runs whose CLI reported tokens, not cost).")


class Lock(Strict):
    slots: int = Field(1, ge=1, description="How many holders at once.")


class Gate(Strict):
    run: str = Field(description="Shell command run by the reconciler in the agent's worktree.")
    timeout: Duration = "15m"
    maxAttempts: int = Field(3, ge=1, description="Gate failures fed back to the session before Failed.")


class Reconcile(Strict):
    interval: Duration | None = None
    cron: Cron | None = None

    @model_validator(mode="after")
    def _one_schedule(self) -> Reconcile:
        if self.interval is not None and self.cron is not None:
            raise ValueError("set either interval or cron, not both")
        return self


class Backoff(Strict):
    initial: Duration = Field("10s", description="Wait before the first restart of a failed session.")
    max: Duration = Field("5m", description="The delay doubles per consecutive failure up to this.")
    resetAfter: Duration = Field("10m", description="A run at least this long counts as healthy: "
                                                    "the next failure starts from `initial` again.")


class GC(Strict):
    prune: bool = Field(True, description="Collect undeclared worktrees and sessions this fleet owns.")
    archiveRetention: Duration = Field("14d", description="How long the archive every prune writes first is kept "
                                                          "when nothing was at stake (docs/safety.md).")
    protectIgnored: list[str] = Field([".env", ".env.*"], description="Ignored files matching one of these globs "
                                      "block a prune (a glob without '/' matches a file name anywhere).")


class Telemetry(Strict):
    otlpEndpoint: str | None = Field(None, description="OTLP/HTTP endpoint, e.g. http://127.0.0.1:4318; null = off.")


class Placement(Strict):
    """Where sessions run (docs/scale-out.md). `local` is this machine; `ray` a Ray cluster."""

    engine: Literal["local", "ray"] = Field("local", description="`local`: sessions run on this machine in git "
                                            "worktrees. `ray`: each session is a detached Ray actor working in a "
                                            "clone of spec.remote on its node.")
    address: str | None = Field(None, description="Ray cluster address: host:port of its GCS, ray://host:10001 "
                                                  "(Ray Client) or auto; default: $RAY_ADDRESS, else auto.")
    namespace: Name | None = Field(None, description="Ray namespace of the fleet's actors; default fleet-<name>.")
    resource: Name = Field("fleet_slots", description="Custom resource each session needs one unit of; nodes "
                                                      "offer it with `ray start --resources`.")
    workdir: str | None = Field(None, description="Directory on each node for session clones and logs (absolute "
                                                  "or ~/...); default ~/.cache/fleet/ray.")
    pushInterval: Duration = Field("60s", description="How often a running session's branch is pushed (it is "
                                                      "also pushed after every commit and when the session ends).")
    secretsDir: str | None = Field(None, description="Directory on each node holding one file per secret, named "
                                                     "after the variable a `fromEnv` reads (a mounted Kubernetes "
                                                     "Secret, say); default: the node's environment only.")


class Push(Strict):
    remote: str = Field(description="Remote of spec.repo the target is pushed to after it moves (never forced).")


class PullRequest(Strict):
    """Pull requests opened or updated with the `gh` CLI: one from the delivery target into
    `base`, and/or (`perAgent`) one per agent branch into the target."""

    repo: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", description="owner/name on the GitHub host "
                      "gh talks to ($GH_HOST, default github.com).")
    base: str | None = Field(None, description="Branch the target's pull request merges into, e.g. main; "
                                               "unset: no pull request for the target (needs perAgent).")
    title: str = Field("fleet: delivered work", description="Title of the target's pull request.")
    draft: bool = False
    perAgent: bool = Field(False, description="Also push each queued (or approval-waiting) agent's branch and keep "
                                              "a pull request from it into the target, with its review packet as "
                                              "the body (docs/delivery.md).")


class Delivery(Strict):
    """The merge queue (docs/delivery.md): Succeeded agents whose gates passed are integrated
    into `into` one by one, gated again on the merged result, and the target moves only by a
    compare-and-swap fast-forward to a commit whose gates passed."""

    into: str = Field(description="Target branch; created from spec.base when missing (or spec.base itself).")
    strategy: Literal["merge", "rebase", "squash"] = Field("merge", description="How an agent branch is integrated: "
                                                           "a merge commit, its commits rebased, or one squashed "
                                                           "commit.")
    gates: list[Name] = Field(default_factory=list, description="Gates run on the merged result (names of "
                                                                "spec.gates). Required unless ungated: true.")
    ungated: bool = Field(False, description="Deliver without gates on the merged result; must be said explicitly.")
    approval: Literal["none", "required"] = Field("none", description="required: an agent enters the queue only "
                                                                      "after `fleet approve`.")
    push: Push | None = None
    pullRequest: PullRequest | None = None
    onConflict: Literal["resume", "block"] = Field("resume", description="resume: the agent's session is resumed "
                                                   "with the conflicting files; block: it waits for a person.")
    batch: int = Field(1, ge=1, description="Agents integrated and gated together; a failing batch is bisected.")
    lock: Name | None = Field(None, description="Lock (spec.locks) held while delivery gates run; default: `build` "
                                                "when declared.")
    maxAttempts: int = Field(3, ge=1, description="Conflicts and integration failures fed back to one agent "
                                                  "before it is left for a person.")


class ForEach(Strict):
    items: list[str] | None = Field(None, min_length=1)
    glob: str | None = Field(None, description="Files relative to the repo; {item} is the matched path.")

    @model_validator(mode="after")
    def _one_source(self) -> ForEach:
        if (self.items is None) == (self.glob is None):
            raise ValueError("forEach needs exactly one of items or glob")
        return self


class Rollout(Strict):
    pilot: int = Field(ge=1, description="Start only this many of the group first; the rest wait (Pending, "
                                         "reason Pilot) until they Succeeded with their gates passed and the "
                                         "projected spend fits the budget left.")


class FromEnv(Strict):
    fromEnv: str = Field(pattern=ENV_NAME_PATTERN,
                         description="Read from this variable of the reconciler's environment; never stored.")


NOTIFY_EVENTS = ("needs-attention", "succeeded", "failed", "budget-exhausted", "pilot-done")


class Notify(Strict):
    """Tell someone when an agent changes state (docs/fleet-yaml.md "Notifications"); the loop sends these."""

    events: list[Literal["needs-attention", "succeeded", "failed", "budget-exhausted", "pilot-done"]] = Field(
        min_length=1, description="The transitions to send: needs-attention, succeeded, failed, budget-exhausted, "
                                  "pilot-done.")
    command: list[str] | None = Field(None, min_length=1, description="argv run with the event as JSON on stdin and "
                                                                      "in $FLEET_EVENT.")
    webhook: str | FromEnv | None = Field(None, description="URL the event is POSTed to as JSON (http or https).")
    headers: dict[str, str | FromEnv] = Field(default_factory=dict, description="Extra HTTP headers of the POST.")
    timeout: Duration = Field("10s", description="Give up on one delivery after this long.")
    debounce: Duration = Field("1m", description="The same event of the same agent at most once in this time.")

    @model_validator(mode="after")
    def _one_target(self) -> Notify:
        if (self.command is None) == (self.webhook is None):
            raise ValueError("a notify entry needs exactly one of command or webhook")
        if isinstance(self.webhook, str) and not self.webhook.startswith(("http://", "https://")):
            raise ValueError("webhook must be an http:// or https:// URL")
        if self.headers and self.webhook is None:
            raise ValueError("headers are for a webhook")
        return self


class Agent(Strict):
    name: str = Field(pattern=AGENT_NAME_PATTERN,
                      description="Unique agent name; may contain {item} when forEach is set.")
    forEach: ForEach | None = None
    tier: Name
    prompt: str = ""
    command: list[str] | None = Field(None, min_length=1, description="argv; runtime `command` only.")
    gates: list[Name] = Field(default_factory=list)
    restart: Literal["Never", "OnFailure", "Always"] = "OnFailure"
    protect: bool = Field(False, description="Never stopped or pruned by fleet (like prevent_destroy).")
    env: dict[Annotated[str, Field(pattern=ENV_NAME_PATTERN)], str | FromEnv] = Field(
        default_factory=dict)
    timeout: Duration | None = Field(None, description="Overrides the tier's timeout.")
    stallAfter: Duration | None = Field(None, description="Overrides the tier's stallAfter.")
    rollout: Rollout | None = Field(None, description="With forEach: pilot runs first (docs/operations.md).")

    @model_validator(mode="after")
    def _rollout_needs_group(self) -> Agent:
        if self.rollout is not None and self.forEach is None:
            raise ValueError("rollout needs forEach: a pilot is part of a group")
        return self
    deliver: bool = Field(True, description="false: never put this agent's branch in the delivery queue.")
    paths: list[str] = Field(default_factory=list, description="Globs of the files this agent may change "
                                                               "(repo-relative); a run changing others is not "
                                                               "delivered (OutOfScope).")


class FleetSpec(Strict):
    repo: str = Field(".", description="Git repository, relative to this file.")
    base: str = Field("main", description="Ref new worktrees branch from.")
    worktrees: Worktrees = Worktrees.model_construct()
    tiers: dict[Name, Tier] = Field(min_length=1)
    concurrency: Concurrency = Concurrency.model_construct()
    budget: Budget = Budget.model_construct()
    locks: dict[Name, Lock] = Field(default_factory=dict)
    gates: dict[Name, Gate] = Field(default_factory=dict)
    reconcile: Reconcile = Reconcile.model_construct()
    restartBackoff: Backoff = Backoff.model_construct()
    gc: GC = GC.model_construct()
    telemetry: Telemetry = Telemetry.model_construct()
    remote: str | None = Field(None, description="Git URL every node can reach (or a path, or the name of a remote "
                                                 "of spec.repo); sessions clone it and push their branches there. "
                                                 "Required by placement.engine ray.")
    placement: Placement = Placement.model_construct()
    delivery: Delivery | None = Field(None, description="The merge queue into a target branch (docs/delivery.md).")
    notify: list[Notify] = Field(default_factory=list, description="Commands and webhooks told of agents' "
                                                                   "transitions by `fleet reconcile`.")
    agents: list[Agent] = Field(default_factory=list)


class Fleet(Strict):
    apiVersion: Literal["fleet/v1alpha1"]
    kind: Literal["Fleet"]
    metadata: Metadata
    spec: FleetSpec

    @property
    def branch_prefix(self) -> str:
        return self.spec.worktrees.branchPrefix or f"fleet/{self.metadata.name}/"
