"""The only module that talks HTTP to Label Studio: connect, project setup, push pre-labels, pull annotations.

Images are referenced, never uploaded: a task's `image` is `/data/local-files/?d=<path relative to the
server's document root>`, served because the image folder is attached as a (never synced) Local Files
import storage. A task is keyed by that relative path, so pushing twice creates no duplicates.
Formats (config XML, coordinates, regions) live in `detal.labelstudio.format`. One rule names the
project (`project_title`) and one picks the document root (`document_root`) for every entry point.
"""

from __future__ import annotations

import json
import logging
import math
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from detal.errors import LabelStudioError
from detal.labelstudio.format import (
    LabelSpec, effort_counts, label_config, parse_label_config, prediction_regions, region_scores, regions_to_yolo,
    validate_prediction,
)
from detal.types import BOX_EFFORT_KEYS, Prediction

log = logging.getLogger(__name__)

_ANNOTATED_QUERY = json.dumps({"filters": {"conjunction": "or", "items": [
    # only_annotated=True does not filter; these Data Manager filters do. Cancelled ones are reported as skipped.
    {"filter": "filter:tasks:total_annotations", "operator": "greater_or_equal", "type": "Number", "value": 1},
    {"filter": "filter:tasks:cancelled_annotations", "operator": "greater_or_equal", "type": "Number", "value": 1},
]}})


def project_title(cfg) -> str:
    """The one project-title rule: `<labelstudio.project>-<experiment>` for simulate, push, pull alike."""
    return f"{cfg.labelstudio.project}-{cfg.experiment}"


def document_root(cfg, dataset_root: Path) -> Path:
    """The one document-root rule: `labelstudio.document_root`, else the dataset folder's parent."""
    return Path(cfg.labelstudio.document_root or Path(dataset_root).parent).resolve()


def check_inside_root(folder: Path, root: Path) -> None:
    """Images are served only from strict subfolders of the document root: fail before creating anything."""
    folder, root = Path(folder).resolve(), Path(root).resolve()
    if root not in folder.parents:
        raise LabelStudioError(f"image folder {folder} must lie strictly inside the Label Studio document root "
                               f"{root}; set labelstudio.document_root to a parent folder of the dataset")


class _Secret:
    """Holds the token so it can be scrubbed from any message that might echo it."""

    def __init__(self, value: str):
        self.value = value

    def scrub(self, text: str) -> str:
        return text.replace(self.value, "***") if self.value else text


@dataclass
class Connection:
    """A connected SDK client (`client`) and the server URL; the token is not kept in a printable field."""

    url: str
    client: Any = field(repr=False)
    timeout: float = 60.0
    _secret: _Secret = field(default=None, repr=False)  # type: ignore[assignment]


def _api_error(what: str, exc: Exception, secret: _Secret | None) -> LabelStudioError:
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        detail = body.get("validation_errors") or body.get("detail") or body
    else:
        detail = body if body is not None else f"{type(exc).__name__}: {exc}"
    msg = f"Label Studio {what} failed" + (f" (HTTP {status})" if status else "") + f": {str(detail)[:300]}"
    return LabelStudioError(secret.scrub(msg) if secret else msg)


RETRIES = 4  # attempts for a call that meets a 5xx or a dropped connection
BACKOFF_S = 0.5  # first wait; doubles each time (0.5, 1, 2 s)


def _transient(exc: Exception) -> bool:
    import httpx

    status = getattr(exc, "status_code", None)
    return isinstance(exc, (httpx.TransportError,)) or (isinstance(status, int) and status >= 500)


def _call(conn: Connection, what: str, fn: Callable, *args, **kwargs):
    """Run one SDK call with bounded retries on 5xx and connection errors (exponential backoff); any
    failure that remains becomes one LabelStudioError without the token."""
    import time

    import httpx
    from label_studio_sdk.core.api_error import ApiError

    for attempt in range(RETRIES):
        try:
            return fn(*args, **kwargs)
        except (ApiError, httpx.HTTPError) as exc:
            if attempt + 1 < RETRIES and _transient(exc):
                log.warning("Label Studio %s failed (%s); retrying in %.1f s", what,
                            conn._secret.scrub(type(exc).__name__), BACKOFF_S * 2 ** attempt)
                time.sleep(BACKOFF_S * 2 ** attempt)
                continue
            raise _api_error(what, exc, conn._secret) from None


def connect(url: str, api_key: str | None, *, timeout: float = 60.0,
            api_key_name: str = "LABEL_STUDIO_API_KEY") -> Connection:
    """Check /health and the token, return a Connection. `api_key_name` only names the variable in errors."""
    import httpx
    from label_studio_sdk import LabelStudio
    from label_studio_sdk.core.api_error import ApiError

    url = str(url).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise LabelStudioError(f"labelstudio.url {url!r} must start with http:// or https://")
    if not api_key:
        raise LabelStudioError(f"Label Studio API token missing: set the environment variable {api_key_name}")
    secret = _Secret(api_key)
    try:
        health = httpx.get(f"{url}/health", timeout=min(timeout, 10.0))
    except httpx.HTTPError as exc:
        raise LabelStudioError(f"cannot reach Label Studio at {url} ({type(exc).__name__}); "
                               "start it with `detal labelstudio serve` or fix labelstudio.url") from None
    if health.status_code != 200:
        raise LabelStudioError(f"Label Studio at {url} is not healthy (GET /health -> HTTP {health.status_code})")
    client = LabelStudio(base_url=url, api_key=api_key, timeout=timeout)
    try:
        who = client.users.whoami()
        if getattr(who, "id", None) is None:
            raise ValueError("no user in the answer")
    except (ValueError, TypeError, AttributeError) as exc:  # an HTTP server that is not Label Studio
        raise LabelStudioError(f"{url} answered, but not as Label Studio does (GET /api/current-user/whoami: "
                               f"{type(exc).__name__}); check labelstudio.url") from None
    except ApiError as exc:
        if exc.status_code is not None and exc.status_code < 400:  # 2xx/3xx that is not the API's JSON
            raise LabelStudioError(f"{url} answered HTTP {exc.status_code}, but not as Label Studio does "
                                   "(GET /api/current-user/whoami); check labelstudio.url") from None
        if exc.status_code in (401, 403):
            raise LabelStudioError(f"Label Studio at {url} refused the API token from {api_key_name} (HTTP {exc.status_code}); "
                                   "use the token of that server's user (legacy tokens need "
                                   "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true on the server)") from None
        raise _api_error(f"authentication check at {url}", exc, secret) from None
    except httpx.HTTPError as exc:
        raise _api_error(f"authentication check at {url}", exc, secret) from None
    return Connection(url=url, client=client, timeout=timeout, _secret=secret)


# ---------------------------------------------------------------- project

def find_project(conn: Connection, title: str) -> int | None:
    matches = [p.id for p in _call(conn, "project list", conn.client.projects.list, title=title) if p.title == title]
    if len(matches) > 1:
        raise LabelStudioError(f"{len(matches)} Label Studio projects are titled {title!r} (ids {matches}); "
                               "rename all but one or set labelstudio.project to another title")
    return matches[0] if matches else None


def project_spec(conn: Connection, project_id: int, names: Sequence[str]) -> LabelSpec:
    return _project(conn, project_id, names)[1]


def _project(conn: Connection, project_id: int, names: Sequence[str]):
    proj = _call(conn, "project get", conn.client.projects.get, id=project_id)
    return proj, parse_label_config(proj.label_config or "", names)


def ensure_project(conn: Connection, title: str, names: Sequence[str], *, document_root: Path,
                   image_root: Path | None = None) -> int:
    """Create or reuse the project titled `title` (its classes must equal `names`); attach `image_root`
    as a Local Files storage (not synced). Returns the project id."""
    title = str(title).strip()
    if len(title) < 3:
        raise LabelStudioError(f"labelstudio.project title {title!r} needs at least 3 characters")
    if image_root is not None:
        check_inside_root(image_root, document_root)  # before the project exists: no empty project left behind
    pid = find_project(conn, title)
    if pid is None:
        xml = label_config(names)
        pid = _call(conn, "project create", conn.client.projects.create, title=title, label_config=xml,
                    description="Pre-labels pushed by detal (active learning).").id
        log.info("created Label Studio project %r (id %d)", title, pid)
    else:
        project_spec(conn, pid, names)  # raises when the classes differ
    if image_root is not None:
        ensure_storage(conn, pid, [Path(image_root)], document_root=document_root)
    return pid


def ensure_storage(conn: Connection, project_id: int, folders: Sequence[Path], *, document_root: Path) -> None:
    """Attach each folder not yet covered as a Local Files import storage (never synced: we import tasks)."""
    root = Path(document_root).resolve()
    have = [Path(s.path).resolve() for s in _call(conn, "storage list", conn.client.import_storage.local.list,
                                                   project=project_id) if s.path]
    for folder in sorted({Path(f).resolve() for f in set(map(Path, folders))}):
        if any(folder == h or h in folder.parents for h in have):
            continue
        check_inside_root(folder, root)
        _call(conn, "storage create", conn.client.import_storage.local.create, project=project_id, path=str(folder),
              use_blob_urls=True, title=f"detal {folder.name}"[:64])
        have.append(folder)


def image_key(image: Path, document_root: Path, *, resolved: bool = False) -> str:
    """The task key: image path relative to the document root, POSIX style."""
    image, root = (Path(image), Path(document_root)) if resolved else (Path(image).resolve(), Path(document_root).resolve())
    try:
        return image.relative_to(root).as_posix()
    except ValueError:
        raise LabelStudioError(f"image {image} is outside the Label Studio document root {root}; "
                               "set labelstudio.document_root to a folder that contains the dataset") from None


def image_url(key: str) -> str:
    return "/data/local-files/?d=" + urllib.parse.quote(key, safe="/")


def _task_key(data: Mapping) -> str | None:
    if isinstance(data.get("path"), str):
        return data["path"]
    url = data.get("image")
    if isinstance(url, str) and "?d=" in url:
        return urllib.parse.unquote(urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("d", [""])[0]) or None
    return None


def _prediction_versions(conn: Connection, project_id: int) -> dict[int, set[str]]:
    """task id -> the model versions of its predictions: one request for the whole project (the task list only
    computes that column for a Data Manager view)."""
    out: dict[int, set[str]] = {}
    for p in _call(conn, "prediction list", conn.client.predictions.list, project=project_id):
        out.setdefault(int(p.task), set()).add(str(p.model_version or ""))
    return out


def _existing_tasks(conn: Connection, project_id: int) -> dict[str, Any]:
    pager = _call(conn, "task list", conn.client.tasks.list, project=project_id, fields="task_only", page_size=1000,
                  include="id,data,total_annotations,cancelled_annotations")
    out = {}
    for t in pager:
        key = _task_key(t.data or {})
        if key is not None:
            out.setdefault(key, t)
    return out


ANNOTATOR_VIEW = "detal: most uncertain first"


def ensure_view(conn: Connection, project_id: int) -> int:
    """A Data Manager tab for annotators: tasks without annotations, most uncertain first (idempotent)."""
    for v in _call(conn, "view list", conn.client.views.list, project=project_id):
        if ((getattr(v, "data", None) or {}).get("title")) == ANNOTATOR_VIEW:
            return int(v.id)
    data = {"title": ANNOTATOR_VIEW, "ordering": ["-tasks:data.uncertainty"],
            "filters": {"conjunction": "and", "items": [
                {"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number", "value": 0}]}}
    return int(_call(conn, "view create", conn.client.views.create, project=project_id, data=data).id)


def task_keys(conn: Connection, project_id: int) -> dict[str, int]:
    """Every task of the project by image key -> task id (how a later run finds what an earlier one pushed)."""
    return {k: int(t.id) for k, t in _existing_tasks(conn, project_id).items()}


# ---------------------------------------------------------------- push

@dataclass
class PushResult:
    task_ids: dict[Path, int]  # every image now holding a task with the newest pre-labels
    created: int = 0
    refreshed: int = 0  # unannotated tasks that got the newer model's prediction
    unchanged: int = 0  # already pushed with this model_version
    annotated: list[Path] = field(default_factory=list)  # left alone: someone already worked on them
    failed: list[Path] = field(default_factory=list)  # predictions that carry an error (unreadable image)


def _score_of(scores, i: int, path: Path) -> float | None:
    """The image's uncertainty; None when it was not scored (NaN/missing: e.g. a random pick)."""
    if scores is None:
        return None
    s = scores.get(path, scores.get(Path(path).resolve())) if isinstance(scores, Mapping) else np.asarray(scores)[i]
    if s is None or math.isnan(float(s)):
        return None
    if not math.isfinite(float(s)):
        raise LabelStudioError(f"uncertainty score for {path} is {s}; scores must be finite numbers")
    return round(float(s), 4)  # a number (sortable), not 15 decimals


def push(conn: Connection, project_id: int, predictions: Sequence[Prediction], *, names: Sequence[str],
         document_root: Path, round_idx: int, model_version: str,
         scores: Mapping[Path, float] | Sequence[float] | np.ndarray | None = None,
         images: Sequence[Path] = (), batch_size: int = 1000, extra: Mapping[Path, dict] | None = None) -> PushResult:
    """Import one task per prediction (bulk batches), each with ONE prediction holding all its boxes.

    Task data: image URL, path key, uncertainty, round (sortable Data Manager columns). Tasks that
    exist and were never annotated get the newer model's prediction (imported again with their data, under
    a new task id: `_refresh`); annotated ones stay as they are.
    The project's model_version is set to `model_version` so the pre-labels are visible.
    `images` are pushed as tasks without pre-labels (e.g. before the first model exists);
    `scores` (dict by path, or aligned with `predictions`) covers `predictions` only; an image without
    a score (NaN, e.g. a random pick) gets no uncertainty value in its task data. `extra` adds task data
    columns per image (e.g. split: val). New tasks are imported in descending uncertainty: the default
    label stream serves tasks by id, so the most uncertain come first.
    """
    if not model_version:
        raise LabelStudioError("model_version must be a non-empty string (the round's model name)")
    if batch_size < 1:
        raise LabelStudioError(f"labelstudio.batch_size must be >= 1, got {batch_size}")
    proj, spec = _project(conn, project_id, names)
    root = Path(document_root).resolve()
    result = PushResult(task_ids={})
    items = []  # (path, key, data, prediction)
    seen = set()
    for i, p in enumerate(predictions):
        path = Path(p.path).resolve()
        if not p.ok:
            log.warning("not pushing %s: %s", path, p.error)
            result.failed.append(path)
            continue
        key = image_key(path, root, resolved=True)
        if key in seen:
            raise LabelStudioError(f"image {path} appears twice in one push; deduplicate the selection")
        seen.add(key)
        regions = prediction_regions(p.boxes, p.cls, p.conf, p.width, p.height, names, spec)
        pred = {"model_version": model_version, "result": regions,
                "score": float(np.mean(p.conf)) if len(regions) else 0.0}  # task-level: mean box confidence
        validate_prediction(pred, spec, str(path))
        data = {"image": image_url(key), "path": key, "round": int(round_idx)}
        unc = _score_of(scores, i, path)
        if unc is not None:
            data["uncertainty"] = unc
        items.append((path, key, data, pred))
    for image in images:
        path = Path(image).resolve()
        key = image_key(path, root, resolved=True)
        if key not in seen:
            seen.add(key)
            items.append((path, key, {"image": image_url(key), "path": key, "round": int(round_idx)}, None))
    extra = {Path(k).resolve(): v for k, v in (extra or {}).items()}
    for path, _, data, _ in items:
        data.update(extra.get(path, {}))
    items.sort(key=lambda it: -it[2].get("uncertainty", -math.inf))  # stable: unscored keep their order, last
    if not items:
        return result
    ensure_storage(conn, project_id, [path.parent for path, *_ in items], document_root=document_root)
    existing = _existing_tasks(conn, project_id) if proj.task_number != 0 else {}  # None: unknown, list
    new, refresh = [], []
    open_existing = [existing[k] for _, k, _, pred in items if pred is not None and k in existing
                     and not (existing[k].total_annotations or existing[k].cancelled_annotations)]
    versions = _prediction_versions(conn, project_id) if open_existing else {}
    for path, key, data, pred in items:
        task = existing.get(key)
        if task is None:
            new.append((path, data, pred))
        elif (task.total_annotations or 0) > 0 or (task.cancelled_annotations or 0) > 0:
            result.annotated.append(path)
        elif pred is None or model_version in versions.get(int(task.id), set()):
            result.unchanged += 1
            result.task_ids[path] = task.id
        else:  # the task keeps its data (round, source, ...); a new uncertainty replaces the old one
            refresh.append((path, task.id, {**(task.data or {}), **data} if "uncertainty" in data
                            else dict(task.data or {}), pred))
    if refresh:  # first: tasks waiting longest stay ahead of the new batch in the default label stream (by id)
        refresh.sort(key=lambda r: -float(r[2].get("uncertainty", -math.inf)))
        again = _refresh(conn, project_id, refresh, batch_size)
        result.task_ids.update(again)
        result.refreshed = len(again)
    for start in range(0, len(new), batch_size):
        chunk = new[start:start + batch_size]
        ids = _import_tasks(conn, project_id, [{"data": d, "predictions": [p] if p else []} for _, d, p in chunk])
        for (path, _, _), tid in zip(chunk, ids):
            result.task_ids[path] = int(tid)
        result.created += len(chunk)
    # the server refuses a model_version no prediction carries (e.g. every task was already annotated)
    sent = any(p is not None for *_, p in new) or bool(refresh) or (result.unchanged and any(p for *_, p in items))
    if sent and proj.model_version != model_version:
        _call(conn, "project update", conn.client.projects.update, id=project_id, model_version=model_version)
    log.info("pushed %d images to project %d: %d created, %d refreshed, %d unchanged, %d already annotated",
             len(items), project_id, result.created, result.refreshed, result.unchanged, len(result.annotated))
    return result


def _post_json(conn: Connection, what: str, path: str, params: dict, body) -> Any:
    """A POST with a body serialised here by the stdlib (the SDK's generic encoder walks every value in Python
    and costs about as much as the server's work for large batches): the SDK's own HTTP client, auth headers
    and retries. None when the SDK no longer exposes that client (the caller uses the SDK's method instead)."""
    http = getattr(getattr(conn.client, "_client_wrapper", None), "httpx_client", None)
    if http is None or not hasattr(http, "request"):
        return None
    resp = _call(conn, what, http.request, path, method="POST", params=params,
                 content=json.dumps(body, allow_nan=False).encode(), headers={"Content-Type": "application/json"})
    if resp.status_code >= 300:
        raise LabelStudioError(conn._secret.scrub(f"Label Studio {what} failed (HTTP {resp.status_code}): "
                                                  f"{resp.text[:300]}"))
    return resp


def _import_tasks(conn: Connection, project_id: int, tasks: list[dict]) -> list[int]:
    """One synchronous bulk import; returns the new task ids in order (all of them, or LabelStudioError).

    Same endpoint as `client.projects.import_tasks`, through `_post_json`; falls back to it if the SDK changes.
    """
    resp = _post_json(conn, "task import", f"api/projects/{project_id}/import", {"return_task_ids": True}, tasks)
    if resp is None:
        resp = _call(conn, "task import", conn.client.projects.import_tasks, id=project_id, return_task_ids=True,
                     request=tasks)
        ids = list((resp.model_dump() if hasattr(resp, "model_dump") else dict(resp)).get("task_ids") or [])
    else:
        ids = list(resp.json().get("task_ids") or [])
    if len(ids) != len(tasks):
        raise LabelStudioError(f"Label Studio imported {len(ids)} of {len(tasks)} tasks; check the server log")
    return ids


_OPEN_ONLY = {"conjunction": "and", "items": [  # a task someone annotated or skipped meanwhile is never deleted
    {"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number", "value": 0},
    {"filter": "filter:tasks:cancelled_annotations", "operator": "equal", "type": "Number", "value": 0}]}


def _delete_open_tasks(conn: Connection, project_id: int, ids: list[int]) -> int | None:
    """Delete these tasks where nobody has annotated or skipped them (one Data Manager action); how many went
    (None: the server did not say)."""
    selected = {"all": False, "included": list(ids)}
    resp = _post_json(conn, "task delete", "api/dm/actions/", {"id": "delete_tasks", "project": project_id},
                      {"selectedItems": selected, "filters": _OPEN_ONLY})
    if resp is None:
        _call(conn, "task delete", conn.client.actions.create, id="delete_tasks", project=project_id,
              selected_items=selected, filters=_OPEN_ONLY)
        return None
    n = resp.json().get("processed_items") if resp.content else None
    return int(n) if isinstance(n, int) else None


def _refresh(conn: Connection, project_id: int, refresh: list, batch_size: int) -> dict[Path, int]:
    """Open tasks get the newer model's prediction by being imported again, with their data, and the old ones
    deleted; returns path -> new task id.

    Importing tasks with their predictions is bulk on the server (about 1.5 ms a task here); importing
    predictions onto existing tasks writes them one at a time (about 32 ms each, 20 minutes for 20,000 open
    tasks), and that refresh was most of a cycle at 10^5 images. Old tasks go first, chunk by chunk: a run
    killed in between leaves those images without a task, which the next run's reconcile pushes again (never a
    duplicate). A task annotated or skipped in the moment between listing and deleting is kept as it is, and
    not imported again."""
    out: dict[Path, int] = {}
    for start in range(0, len(refresh), batch_size):
        chunk = refresh[start:start + batch_size]
        ids = [tid for _, tid, _, _ in chunk]
        gone = _delete_open_tasks(conn, project_id, ids)
        if gone != len(ids):  # someone worked on one meanwhile (or the server did not say): ask which are left
            left = {int(t.id) for t in _existing_tasks(conn, project_id).values()} & set(ids)
            chunk = [c for c in chunk if c[1] not in left]
        new_ids = _import_tasks(conn, project_id, [{"data": data, "predictions": [pred]} for _, _, data, pred in chunk])
        out.update({path: int(tid) for (path, *_), tid in zip(chunk, new_ids)})
    return out


# ---------------------------------------------------------------- pull

@dataclass
class PullResult:
    labels: dict[Path, np.ndarray]  # (n, 5) cls cx cy w h, normalised; empty array = "no objects"
    skipped: list[Path]  # every annotation cancelled/skipped: NOT labelled
    effort: dict[Path, dict[str, int]]  # per labelled image: accepted, corrected, deleted, added
    task_ids: dict[Path, int] = field(default_factory=dict)
    # per labelled image: the pre-labels the annotator started from, (n, 5) YOLO rows and (n,) region scores
    prelabels: dict[Path, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    # per labelled image: seconds people spent on its task (Label Studio `lead_time`), summed over its annotations
    # (the editor already sums the sessions of one annotation; a skip, a second annotation each add theirs); absent
    # where no annotation carries one (made through the API without it)
    lead_time: dict[Path, float] = field(default_factory=dict)
    # per labelled image: how many annotations its task has (skips included) and the newest one's updated_at: a
    # task is one annotator's single pass while both stay as they were first seen
    passes: dict[Path, tuple[int, str]] = field(default_factory=dict)

    def effort_totals(self, images=None) -> dict[str, int]:
        """Box effort summed over `images` (default: every labelled one), plus the skipped count."""
        out = dict.fromkeys(BOX_EFFORT_KEYS, 0)
        for path, counts in self.effort.items():
            if images is None or path in images:
                for k in BOX_EFFORT_KEYS:
                    out[k] += counts[k]
        out["skipped"] = len(self.skipped if images is None else [p for p in self.skipped if p in images])
        return out


def _when(a: Mapping) -> tuple:
    return (str(a.get("updated_at") or a.get("created_at") or ""), int(a.get("id") or 0))


def _as_dict(x: Any) -> dict:
    return x if isinstance(x, dict) else x.model_dump()


def _prelabel(preds: list[dict], ann: dict, project_version: str | None) -> dict | None:
    """The prediction the annotator started from: its parent, else the project's current model's, else the newest."""
    if not preds:
        return None
    parent = ann.get("parent_prediction")
    for p in preds:
        if parent is not None and p.get("id") == parent:
            return p
    current = [p for p in preds if project_version and p.get("model_version") == project_version]
    return max(current or preds, key=lambda p: int(p.get("id") or 0))


def pull(conn: Connection, project_id: int, names: Sequence[str], *, document_root: Path) -> PullResult:
    """Annotated tasks -> YOLO labels (latest non-cancelled annotation per task) and effort counts.

    Unannotated tasks are not returned; tasks whose annotations are all cancelled are listed in `skipped`.
    An unknown label name raises LabelStudioError.
    """
    proj, spec = _project(conn, project_id, names)
    project_version = proj.model_version
    root = Path(document_root).resolve()
    out = PullResult(labels={}, skipped=[], effort={})
    pager = _call(conn, "task list", conn.client.tasks.list, project=project_id, fields="all", page_size=500,
                  query=_ANNOTATED_QUERY)
    for task in pager:
        key = _task_key(task.data or {})
        if key is None:
            log.warning("task %s has no image path in its data; ignored", task.id)
            continue
        path = (root / key).resolve()
        anns = [_as_dict(a) for a in (task.annotations or [])]
        done = [a for a in anns if not a.get("was_cancelled")]
        if not done:
            if anns:
                out.skipped.append(path)
            continue
        ann = max(done, key=_when)
        where = f"task {task.id} ({key})"
        labels = regions_to_yolo(ann.get("result") or [], spec, where)
        pre = _prelabel([_as_dict(p) for p in (task.predictions or [])], ann, project_version)
        pre_labels = regions_to_yolo(pre.get("result") or [], spec, where + " prediction") if pre else labels[:0]
        out.labels[path] = labels
        out.effort[path] = effort_counts(pre_labels, labels)
        if pre:
            out.prelabels[path] = (pre_labels, region_scores(pre.get("result") or [], spec))
        out.task_ids[path] = int(task.id)
        times = [float(a["lead_time"]) for a in anns if a.get("lead_time") is not None]
        if times:
            out.lead_time[path] = float(sum(times))
        out.passes[path] = (len(anns), _when(ann)[0])
    return out


def submit_annotation(conn: Connection, task_id: int, result: list[dict], *, cancelled: bool = False,
                      lead_time: float | None = None) -> int:
    """Create one annotation as the connected user (the simulated annotator, tests); returns its id.

    `cancelled=True` records a skip, which `pull` reports and never turns into a label. `lead_time`: the seconds
    spent on it, as the editor records them (a scripted annotator's known time); None leaves it unset.
    """
    extra = {} if lead_time is None else {"lead_time": float(lead_time)}
    ann = _call(conn, "annotation create", conn.client.annotations.create, id=int(task_id), result=list(result),
                was_cancelled=bool(cancelled), **extra)
    return int(ann.id)
