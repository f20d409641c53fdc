"""What a job leaves behind when it ends: the index of its custom_ids, and its gateway files.

Both are best effort: a job's outcome is decided before this runs, and nothing
here may change it. A gateway that refuses a delete (Kong may route no DELETE)
is reported, file by file, in the job's result; one that fails retryably is
retried by Temporal a few times, then reported the same way by the workflow.
"""

from __future__ import annotations

from temporalio import activity

from activities.input_index import input_index_location
from contracts.job import GatewayFiles
from gateway.client import GatewayClient
from gateway.errors import GatewayError, RouteNotSupportedError
from storage import LocationError, Storage, StorageUnavailable


async def forget_input_index(storage: Storage, output_path: str, sha256: str) -> None:
    """Remove the index validation wrote beside the results; a failure is only logged."""
    await forget_index(storage, input_index_location(output_path, sha256))


async def forget_index(storage: Storage, index: str) -> None:
    try:
        await storage.delete(index)
    except (LocationError, StorageUnavailable, OSError) as exc:
        activity.logger.warning("input index %s left behind: %s", index, exc)


async def delete_gateway_files(
    client: GatewayClient, file_ids: list[str], *, raise_retryable: bool = True
) -> GatewayFiles:
    """Delete each file; one the gateway no longer holds counts as deleted (a retry's).

    A retryable failure (5xx, no answer) is raised, so Temporal tries again, or
    with raise_retryable=False (a step that must not retry for it: collection)
    reported as the clean-up step's last try is; a refusal is final and
    reported; a gateway with no delete route is not asked again for the rest.
    """
    done = GatewayFiles()
    no_route: str | None = None
    for file_id in dict.fromkeys(file_ids):
        if no_route is not None:
            done.left[file_id] = no_route
            continue
        try:
            found = await client.delete_file(file_id)
        except RouteNotSupportedError as exc:
            no_route = f"the gateway has no delete route for files (HTTP {exc.status_code})"
            done.left[file_id] = no_route
            activity.logger.warning("file %s left at the gateway: %s", file_id, no_route)
            continue
        except GatewayError as exc:
            if exc.retryable:
                if raise_retryable:
                    raise
                done.left[file_id] = f"the delete did not finish: {exc.message}"
                activity.logger.warning("file %s left at the gateway: %s", file_id, exc.message)
                continue
            done.left[file_id] = f"the gateway refused the delete: {exc.message}"
            activity.logger.warning("file %s left at the gateway: %s", file_id, exc.message)
            continue
        done.deleted.append(file_id)
        activity.logger.info(
            "deleted file %s at the gateway%s", file_id, "" if found else " (already gone)"
        )
    return done
