"""Screenshots of a running batch job in the Temporal Web UI, for docs/web-ui.md.

    python -m scripts.screenshots              # or: make screenshots

Starts its own Temporal dev server (in memory), gateway emulator and worker on
free ports, so a stack already up is left alone and the list shows only this
job. The emulator runs one line at a time, slowly, so the batch stays
in_progress while headless Chromium (Debian's ``chromium``, driven by
Playwright) captures the workflow list, the workflow page and its pending
activities into docs/screenshots/. Everything it started is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from playwright.sync_api import Page, ViewportSize, sync_playwright
from temporalio.common import SearchAttributeKey

from contracts.names import (
    SEARCH_ATTRIBUTE_BATCH_ID,
    SEARCH_ATTRIBUTE_BATCH_STATUS,
)
from devstack.emulator import EmulatorProcess
from devstack.local import LOCAL, LOGS, LocalStack
from devstack.ports import LOCALHOST, free_port
from devstack.process import REPO_ROOT
from devstack.temporal import DevServerProcess
from devstack.worker import WorkerProcess
from temporal_client import connect

OUT = REPO_ROOT / "docs" / "screenshots"
WORK = LOCAL / "screenshots"
WORKFLOW_ID = "batch-nightly-catalog"
NAMESPACE = "default"
# Five lines, one at a time, 30 s each: two and a half minutes in_progress.
LINE_SECONDS = 30
IN_PROGRESS_WAIT_SECONDS = 90
VIEWPORT: ViewportSize = {"width": 1920, "height": 1000}
# The caller's settings for another stack must not reach this one's processes:
# a codec key, for one, would show every payload encrypted.
ISOLATED_ENV_PREFIXES = ("TEMPORAL_", "GATEWAY_", "AZURE_", "BATCH_", "EMULATOR_", "WORKER_")
IN_PROGRESS_QUERY = f'{SEARCH_ATTRIBUTE_BATCH_STATUS}="in_progress"'


def isolate_environment() -> None:
    for name in list(os.environ):
        if name.startswith(ISOLATED_ENV_PREFIXES):
            del os.environ[name]


def start_stack(stack: LocalStack, temporal: int, ui: int, gateway: int) -> dict[str, str]:
    """Server, emulator and worker; returns the environment that reaches them."""
    stack.launch(
        DevServerProcess(
            port=temporal,
            ui_port=ui,
            db_file=WORK / f"temporal-{temporal}.db",
            log_path=LOGS / "screenshots-temporal.log",
        )
    )
    emulator = EmulatorProcess(
        WORK / f"emulator-{gateway}",
        port=gateway,
        knobs={"line_latency_seconds": LINE_SECONDS, "batch_concurrency": 1},
        log_path=LOGS / "screenshots-emulator.log",
    )
    stack.launch(emulator)
    env = {
        "TEMPORAL_ADDRESS": f"{LOCALHOST}:{temporal}",
        "TEMPORAL_NAMESPACE": NAMESPACE,
        "TEMPORAL_WEB_UI": f"http://{LOCALHOST}:{ui}",
        "GATEWAY_URL": emulator.base_url,
    }
    stack.launch(WorkerProcess(LOGS / "screenshots-worker.log", env))
    return env


def start_job(env: dict[str, str]) -> None:
    output = WORK / "out"
    log = LOGS / "screenshots-starter.log"
    with log.open("ab") as out:
        done = subprocess.run(
            [
                sys.executable,
                "starter.py",
                "start",
                "examples/batch.jsonl",
                f"--id={WORKFLOW_ID}",
                "--poll-seconds=5",
                f"--output={output}.jsonl",
                f"--errors={output}.errors.jsonl",
            ],
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=60,
            check=False,
        )
    if done.returncode != 0:
        raise SystemExit(f"screenshots: the starter failed; see {log}")


async def wait_for_in_progress(address: str) -> str:
    """The run id, once the workflow says its batch is in_progress and a line has finished."""
    client = await connect({"TEMPORAL_ADDRESS": address})
    handle = client.get_workflow_handle(WORKFLOW_ID)
    batch_status = SearchAttributeKey.for_keyword(SEARCH_ATTRIBUTE_BATCH_STATUS)
    deadline = time.monotonic() + IN_PROGRESS_WAIT_SECONDS
    while time.monotonic() < deadline:
        description = await handle.describe()
        if description.typed_search_attributes.get(batch_status) == "in_progress":
            # One poll after the first line, so the pending activity shows counts.
            await asyncio.sleep(LINE_SECONDS + 6)
            return description.run_id or ""
        await asyncio.sleep(1)
    raise SystemExit(
        f"screenshots: {WORKFLOW_ID} not in_progress after {IN_PROGRESS_WAIT_SECONDS}s; "
        f"see {LOGS}/screenshots-worker.log"
    )


def capture(page: Page, url: str | None, name: str) -> Path:
    """page (at url, when given) once the job's id shows and live updates have had a moment."""
    if url is not None:
        page.goto(url)
    # Not "networkidle": a running workflow's pages keep polling.
    page.get_by_text(WORKFLOW_ID).first.wait_for(timeout=30_000)
    page.wait_for_timeout(2500)
    path = OUT / name
    page.screenshot(path=str(path))
    print(f"screenshots: {path.relative_to(REPO_ROOT)}", file=sys.stderr)
    return path


def add_batch_columns(page: Page) -> Path:
    """Adds BatchStatus and BatchId to the list, as docs/web-ui.md tells a reader to."""
    page.get_by_test_id("workflows-summary-table-configuration-button").click()
    # Room for the batch id: the run id is one click away on the workflow page.
    page.get_by_test_id("orderable-list-item-Run ID-remove-button").click()
    for attribute in (SEARCH_ATTRIBUTE_BATCH_STATUS, SEARCH_ATTRIBUTE_BATCH_ID):
        page.get_by_test_id(f"orderable-list-item-{attribute}-add-button").click()
    page.get_by_text("Configure Workflows Table").scroll_into_view_if_needed()
    shot = capture(page, None, "list-columns.png")
    page.get_by_test_id("drawer-close-button").click()
    return shot


def save_in_progress_view(page: Page, workflows: str) -> Path:
    """The query as a saved view, one click away in "Saved Views" from then on."""
    page.goto(f"{workflows}?query={IN_PROGRESS_QUERY}")
    page.get_by_text(WORKFLOW_ID).first.wait_for(timeout=30_000)
    page.get_by_role("button", name="Save as New").click()
    page.get_by_role("dialog").get_by_role("textbox").fill("Batches in progress")
    page.get_by_role("dialog").get_by_test_id("confirm-modal-button").click()
    return capture(page, None, "list-in-progress.png")


def current_details(page: Page, workflow: str) -> Path:
    """The workflow's current details: the phase, batch and counts it sets as it goes."""
    page.goto(f"{workflow}/history")
    page.get_by_text("User Metadata", exact=True).click()
    return capture(page, None, "workflow-details.png")


def pending_activities(page: Page, workflow: str) -> Path:
    """The watch with its heartbeat details: a new watch beats after its second read."""
    for _ in range(20):
        page.goto(f"{workflow}/pending-activities")
        page.get_by_text(WORKFLOW_ID).first.wait_for(timeout=30_000)
        if page.get_by_text("Heartbeat Details").count():
            break
        page.wait_for_timeout(2000)
    return capture(page, None, "pending-activities.png")


def take_screenshots(ui: str, run_id: str) -> list[Path]:
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("screenshots: no chromium on PATH; apt-get install -y chromium")
    OUT.mkdir(parents=True, exist_ok=True)
    workflows = f"{ui}/namespaces/{NAMESPACE}/workflows"
    workflow = f"{workflows}/{WORKFLOW_ID}/{run_id}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(workflows)
            return [
                add_batch_columns(page),
                capture(page, workflows, "list.png"),
                save_in_progress_view(page, workflows),
                capture(page, f"{workflow}/timeline", "workflow-timeline.png"),
                capture(page, f"{workflow}/history", "workflow-history.png"),
                current_details(page, workflow),
                pending_activities(page, workflow),
            ]
        finally:
            browser.close()


def main() -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    temporal, ui, gateway = free_port(), free_port(), free_port()
    isolate_environment()
    stack = LocalStack()
    try:
        env = start_stack(stack, temporal, ui, gateway)
        start_job(env)
        run_id = asyncio.run(wait_for_in_progress(env["TEMPORAL_ADDRESS"]))
        take_screenshots(env["TEMPORAL_WEB_UI"], run_id)
    finally:
        stack.stop()
        shutil.rmtree(WORK, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
