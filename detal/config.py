"""The one validated, frozen configuration object, loaded from YAML.

Unknown keys and bad values become a ConfigError with one line that names the file, the key path and
the fix (with the near miss for a typo). Relative paths resolve against the current directory, like
every other command-line path (run detal from the project root).

This is the ONLY place defaults live (like Ultralytics' cfg/default.yaml): functions deeper down take
their values from a Config and have no defaults of their own for the same settings. Registries (measures,
reductions, strategies) are imported inside the validators: they import this module for their parameters.
"""

from __future__ import annotations

import math

from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from detal.errors import ConfigError
from detal.registry import lookup, near_miss


class _Model(BaseModel):
    # coerce_numbers_to_str: YAML and --set read `device: 0` (the first GPU), `experiment: 2024` or a numeric
    # project title as numbers; a text key takes them as their text instead of refusing its own value
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class SynthConfig(_Model):
    """Generate the dataset with `detal synth` when `data` does not exist yet."""

    images: int = Field(700, ge=2)
    seed: int = 0
    imgsz: int = Field(160, ge=32)
    val_fraction: float = Field(0.2, gt=0, lt=1)
    palette: float = Field(0.8, ge=0, le=1)


class ModelConfig(_Model):
    arch: str = "yolov8n.yaml"
    imgsz: int = Field(160, ge=32)
    batch: int = Field(16, ge=1)
    device: str = "auto"
    workers: int = Field(0, ge=0)
    threads: int | None = Field(None, ge=1)
    warm_start: bool = True
    train_args: dict[str, Any] = Field(default_factory=dict)

    @field_validator("arch")
    @classmethod
    def _arch(cls, v: str) -> str:
        if not (v.endswith((".yaml", ".yml", ".pt"))):
            raise ValueError(f"'{v}' is neither an architecture .yaml (e.g. yolov8n.yaml) nor a .pt weights file")
        return v

    @model_validator(mode="after")
    def _gpus(self) -> "ModelConfig":
        """device names one device or several GPUs (0,1: Ultralytics' own DDP, batch split across them)."""
        from detal.detector.runtime import _DEVICE_RE

        dev = str(self.device).strip().lower().replace(" ", "")
        if dev != "auto" and not _DEVICE_RE.match(dev):
            raise ValueError(f"device {self.device!r} is not valid; use auto, cpu, mps, 0, cuda:0, or 0,1 for "
                             "several GPUs (Ultralytics DDP)")
        gpus = dev.split(",")
        if len(gpus) > 1:
            if len(set(gpus)) != len(gpus):
                raise ValueError(f"device {self.device!r} names a GPU twice; list each once, e.g. 0,1")
            if self.batch % len(gpus):
                lo = max(len(gpus), self.batch - self.batch % len(gpus))
                raise ValueError(f"batch {self.batch} with device {self.device} (DDP on {len(gpus)} GPUs splits each "
                                 f"batch evenly across them): use a multiple of {len(gpus)}, e.g. {lo}")
        return self


class ScheduleConfig(_Model):
    seed_fraction: float = Field(0.02, gt=0, le=1)
    select_fraction: float = Field(0.10, gt=0, le=1)
    epochs_per_round: int = Field(20, ge=1)
    total_epochs: int = Field(100, ge=1)
    # 0 = off. Else each round trains at least this many batches (optimizer steps with nbs = batch): a 2%
    # seed set is 2-3 batches, and 20 epochs of it leave a detector that finds nothing.
    min_steps_per_round: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _epochs(self) -> "ScheduleConfig":
        if self.total_epochs < self.epochs_per_round:
            raise ValueError(f"total_epochs ({self.total_epochs}) must be >= epochs_per_round ({self.epochs_per_round})")
        if self.total_epochs % self.epochs_per_round:
            lo = self.total_epochs - self.total_epochs % self.epochs_per_round
            raise ValueError(f"total_epochs ({self.total_epochs}) is not a multiple of epochs_per_round "
                             f"({self.epochs_per_round}); use {lo} or {lo + self.epochs_per_round}")
        return self

    @property
    def rounds(self) -> int:
        return self.total_epochs // self.epochs_per_round

    def epochs_for(self, labelled_images: int, batch: int) -> int:
        """Epochs of a round on `labelled_images`: epochs_per_round, raised to reach min_steps_per_round batches."""
        batches = max(1, math.ceil(labelled_images / batch))
        return max(self.epochs_per_round, math.ceil(self.min_steps_per_round / batches))


class SelectionConfig(_Model):
    subset_fraction: float = Field(0.2, gt=0, le=1)
    mix_ratio: float = Field(0.5, ge=0, le=1)
    candidate_factor: float = Field(3.0, ge=1)
    class_balance: float = Field(0.0, ge=0)
    min_subset_factor: float = Field(5.0, ge=1)  # entropy_wide / mix_wide only: subset >= this x ranked images
    # the strategy of the first selection (after training on the seed set), when the model is weakest;
    # None: the arm's own strategy in every round
    first_round: str | None = None

    @field_validator("first_round")
    @classmethod
    def _first_round(cls, v: str | None) -> str | None:
        if v is not None:
            from detal.acquisition.selection import STRATEGIES

            lookup(STRATEGIES, v, "strategy")
        return v


# Where and how fast a run goes, not what the experiment is: a run started on CPU may resume on a GPU,
# and a training shared between arms (detal.shared_training) does not depend on them.
NOT_THE_EXPERIMENT = {"model": ("device", "workers", "threads"), "scoring": ("workers", "engine"),
                      "ray": ("address", "actors", "cpus_per_actor", "gpus_per_actor")}


class ScoringConfig(_Model):
    measure: str = "entropy"
    reduction: str = "sum"
    conf: float = Field(0.1, ge=0, lt=1)
    iou: float = Field(0.7, gt=0, le=1)
    empty: Union[Literal["zero", "max"], float] = "zero"
    topk: int = Field(3, ge=1)
    batch: int = Field(32, ge=1)
    workers: int = Field(2, ge=0)
    audit: bool = False
    calibration: Literal["none", "difficulty", "temperature"] = "none"
    engine: Literal["local", "ray"] = "local"  # where the scoring pass runs (ray: detal.engines.ray_scoring)

    @field_validator("measure")
    @classmethod
    def _measure(cls, v: str) -> str:
        from detal.acquisition.uncertainty import ALL_MEASURES

        lookup(ALL_MEASURES, v, "measure")
        return v

    @field_validator("reduction")
    @classmethod
    def _reduction(cls, v: str) -> str:
        from detal.acquisition.uncertainty import REDUCTIONS

        lookup(REDUCTIONS, v, "reduction")
        return v

    @model_validator(mode="after")
    def _calibration(self):
        if self.calibration == "temperature" and self.measure == "flip":
            raise ValueError("calibration temperature rescales class scores, and measure flip is not computed "
                             "from them; use calibration none or difficulty with flip")
        return self


class RayConfig(_Model):
    """The Ray cluster of `scoring.engine: ray` (detal.engines.ray_scoring; docs/scale-out.md)."""

    address: str | None = None  # None: start a local Ray here; auto: this node's cluster; HOST:PORT, ray://HOST:PORT
    actors: int | None = Field(None, ge=1)  # scoring actors; None: as many as the cluster's CPUs (GPUs) hold
    cpus_per_actor: float = Field(1.0, gt=0)
    gpus_per_actor: float = Field(0.0, ge=0)  # > 0: each actor scores on its GPU share

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is None or v == "auto":
            return v
        rest = v[len("ray://"):] if v.startswith("ray://") else v
        host, sep, port = rest.rpartition(":")
        if "://" in rest or not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("expected HOST:PORT (e.g. 10.0.0.5:6379), ray://HOST:PORT (Ray Client, e.g. "
                             "ray://10.0.0.5:10001), auto (the cluster this node belongs to) or null (a local Ray)")
        return v


class PrelabelConfig(_Model):
    conf: float = Field(0.25, ge=0, lt=1)
    # one box per object for annotators: two near-identical boxes of different classes on one shape are a
    # deletion each; class-agnostic suppression keeps the best class (scoring keeps every class vector)
    agnostic: bool = True
    agnostic_iou: float = Field(0.7, gt=0, le=1)
    # simulation only (annotator: oracle): pre-labels at this confidence or above become labels without review,
    # people fix only the rest (box-level partial annotation; detal.cost.trusted). null = every box is reviewed
    trust: float | None = Field(None, gt=0, le=1)


class CycleConfig(_Model):
    """The scheduled job (`detal init / cycle / status`) on a live Label Studio project."""

    strategy: str = "recommended"  # the alias the label-efficiency study backs (acquisition.selection)
    seed: int = 0  # the project's random seed: seed set, val sample, selection RNG
    min_new_labels: int = Field(1, ge=1)
    val_fraction: float = Field(0.1, gt=0, lt=1)  # reserved for evaluation when data.yaml has no labelled val
    val_max: int = Field(300, ge=1)
    # share of every batch drawn uniformly from the pool when the strategy has no random share of its own
    # (`recommended` has none): the unbiased sample `detal status` estimates pre-label quality and seconds on.
    # Measured cost: mix_wide (a 0.5 random share) needs 0.930 of random's images against entropy_wide's 0.909
    # (shapes, issue 11), so 0.1 costs ~0.004 of random's images by linear interpolation: next to nothing
    audit_share: float = Field(0.1, ge=0, lt=1)

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, v: str) -> str:
        from detal.acquisition.selection import STRATEGIES

        lookup(STRATEGIES, v, "strategy")
        return v


class CostConfig(_Model):
    """Seconds an annotator pays per action when turning the pre-labels shown into final labels (detal.cost).

    Defaults from published timings where there is one; the others are stated assumptions between them.
    `detal cost fit` replaces them with what your own annotators' Label Studio lead_time says.
    """

    # open the image, look, submit: an assumption (image-level class labels take ~1 s per class,
    # Papadopoulos et al. CVPR 2016, and a person also loads and submits the task)
    per_image: float = Field(3.0, ge=0)
    # a correct pre-label, verified yes/no: verification is ~1.6 s a box (Papadopoulos et al., "We don't need
    # no bounding-boxes", CVPR 2016; verification alone cut total annotation time 6-9x)
    accepted: float = Field(1.6, ge=0)
    # a box dragged or resized into place: an assumption, between a verification and a drawing
    moved: float = Field(4.0, ge=0)
    # a class changed from the list: an assumption, a verification and a click
    relabelled: float = Field(2.5, ge=0)
    # a false box removed: an assumption, a verification and a delete
    deleted: float = Field(2.0, ge=0)
    # a missed box drawn from nothing: 7.0 s with extreme clicking (Papadopoulos et al., ICCV 2017); the classic
    # ILSVRC protocol costs ~35 s for a high-quality box (Su et al. 2012, as cited there): 7 is the conservative
    # choice, it credits pre-labels least
    drawn: float = Field(7.0, ge=0)
    # simulated annotators only (their final labels are the ground truth, never pixel-equal to a prediction): a
    # pre-label of the right class at IoU >= this with its object is accepted as is, below it is moved. Two careful
    # annotators' boxes of one object agree at ~0.88 IoU on average (Papadopoulos et al., ICCV 2017): a box within
    # that is one a person leaves. People in Label Studio: what they changed is what they paid for.
    accept_iou: float = Field(0.85, gt=0, le=1)

    @property
    def per_action(self) -> dict[str, float]:
        from detal.cost import ACTIONS

        return {a: float(getattr(self, a)) for a in ACTIONS}  # accept_iou is a tolerance, not an action


class ReportConfig(_Model):
    """How the comparison report judges (detal report, the end of simulate and cycle); not part of the experiment."""

    # the cost the verdict's "labels saved" sentence is measured in: what annotators pay (seconds, with
    # pre-labels), or the counts of labelled images or boxes
    cost_axis: Literal["images", "boxes", "seconds"] = "seconds"


class LabelStudioConfig(_Model):
    url: str = "http://127.0.0.1:8080"
    api_key_env: str = "LABEL_STUDIO_API_KEY"
    project: str = Field("detal", min_length=1)  # title prefix: the project is "<project>-<experiment>"
    batch_size: int = Field(1000, ge=1)
    timeout: float = Field(120.0, gt=0)
    document_root: Path | None = None


class Config(_Model):
    experiment: str = Field("experiment", pattern=r"^[A-Za-z0-9._-]+$")
    data: Path
    synth: SynthConfig | None = None
    output_dir: Path = Path("runs")
    seeds: tuple[int, ...] = (0,)
    strategies: tuple[str, ...] = ("random", "mix")
    annotator: Literal["oracle", "labelstudio"] = "oracle"
    model: ModelConfig = ModelConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    selection: SelectionConfig = SelectionConfig()
    scoring: ScoringConfig = ScoringConfig()
    ray: RayConfig = RayConfig()
    prelabel: PrelabelConfig = PrelabelConfig()
    labelstudio: LabelStudioConfig = LabelStudioConfig()
    cycle: CycleConfig = CycleConfig()
    cost: CostConfig = CostConfig()
    report: ReportConfig = ReportConfig()

    @field_validator("strategies")
    @classmethod
    def _strategies(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("list at least one strategy, e.g. [random, mix]")
        if len(set(v)) != len(v):
            raise ValueError("each strategy may appear once")
        from detal.acquisition.selection import STRATEGIES

        for s in v:
            lookup(STRATEGIES, s, "strategy")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or len(set(v)) != len(v):
            raise ValueError("give one or more distinct integer seeds, e.g. [0, 1, 2]")
        return v

    @model_validator(mode="after")
    def _trust(self) -> "Config":
        t = self.prelabel.trust
        if t is not None and self.annotator != "oracle":
            raise ValueError("prelabel.trust is simulation only (annotator: oracle): people in Label Studio review "
                             "every pre-label they are shown; set prelabel.trust: null")
        if t is not None and t <= self.prelabel.conf:
            raise ValueError(f"prelabel.trust {t} must be above prelabel.conf {self.prelabel.conf} (the boxes shown): "
                             "raise it, or set null to review every box")
        return self

    @property
    def run_dir(self) -> Path:
        return self.output_dir / self.experiment


def scoring_calibration(strategy: str, scoring: ScoringConfig) -> str:
    """The calibration `strategy` scores with: the one its registration carries (`recommended`), else the config's.

    A carried calibration replaces `none` only: a config that names another calibration, or a measure the
    carried one cannot use, with such a strategy is refused (ValueError with the fix), never half-applied.
    """
    from detal.acquisition.selection import STRATEGIES, resolve

    carried = lookup(STRATEGIES, strategy, "strategy").calibration
    if carried is None or scoring.calibration == carried:
        return scoring.calibration
    rule = resolve(strategy)
    if scoring.calibration != "none":
        raise ValueError(f"strategy {strategy} is {rule} with calibration {carried} (what the label-efficiency "
                         f"study backs); set calibration none or {carried}, or name {rule} to choose your own")
    if carried == "temperature" and scoring.measure == "flip":
        raise ValueError(f"strategy {strategy} is {rule} with calibration temperature, which rescales class "
                         f"scores, and measure flip is not computed from them; name {rule} to score with flip")
    return carried


def check_calibration(cfg: "Config", strategies, source: str, key: str = "strategies") -> None:
    """ConfigError (one line, naming the keys) when a strategy's carried calibration clashes with `scoring`."""
    for s in strategies:
        try:
            scoring_calibration(s, cfg.scoring)
        except ValueError as exc:
            raise ConfigError(f"{source}: scoring.calibration / {key}: {exc}") from None


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The valid keys of the (sub)model at `loc`, to suggest the near miss for an unknown key."""
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        ann = field.annotation if field else None
        sub = next((a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if sub is None:
            return []
        model = sub
    return list(model.model_fields)


def _format_error(err: dict, source: str) -> str:
    loc = tuple(p for p in err["loc"])
    key = ".".join(str(p) for p in loc) or "<top level>"
    if err["type"] == "extra_forbidden":
        valid = _fields_at(Config, loc[:-1])
        near = near_miss(loc[-1], valid)
        hint = f"did you mean '{near}'?" if near else f"valid keys here: {', '.join(valid)}"
        return f"{source}: {key}: unknown key; {hint}"
    if err["type"] == "missing":
        return f"{source}: {key}: required key is missing; add it (see configs/demo.yaml)"
    msg = err["msg"].removeprefix("Value error, ").rstrip(".")
    value = err.get("input")
    shown = f" (got {value!r})" if value is not None and not isinstance(value, (dict, list)) else ""
    return f"{source}: {key}: {msg}{shown}"


def parse_config(raw: Any, source: str = "<config>") -> Config:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of keys (see configs/demo.yaml)")
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc.errors()[0], source)) from None
    check_calibration(cfg, cfg.strategies, source)  # cycle.strategy is checked where the cycle runs
    check_calibration(cfg, [cfg.selection.first_round] if cfg.selection.first_round else [], source,
                      key="selection.first_round")
    if cfg.model.train_args:
        # against Ultralytics' own argument list and value checks, now rather than when round 1 trains
        from detal.detector.train import check_train_overrides

        try:
            checked = check_train_overrides(dict(cfg.model.train_args), "model.train_args")
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"train_args": checked})})
    return cfg


def _set_override(raw: dict, item: str) -> None:
    """Apply one `key.sub=value` override (value parsed as YAML) from the command line."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set schedule.total_epochs=40")
    key, value = item.split("=", 1)
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {item!r}: '{part}' is not a section")
    node[parts[-1]] = yaml.safe_load(value)


def load_config(path: str | Path, overrides: tuple[str, ...] | list[str] = ()) -> Config:
    """Load, override (`a.b=value`) and validate a YAML config file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found; try configs/demo.yaml")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8-sig")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                          "save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the config ({exc.strerror or exc}); check its permissions") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}{where}: invalid YAML ({getattr(exc, 'problem', exc)}); fix the syntax") from None
    if isinstance(raw, dict):
        for item in overrides:
            _set_override(raw, item)
    return parse_config(raw, str(p))
