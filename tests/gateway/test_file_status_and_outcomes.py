"""A file's processing status, deleting files, and whether a failed create may have acted."""

from __future__ import annotations

import httpx
import pytest
import respx

from gateway.errors import (
    GatewayError,
    InputFileNotReadyError,
    RejectedByGatewayError,
    RetryableGatewayError,
    RouteNotSupportedError,
)
from gateway.models import FileStatus
from gateway.settings import Dialect
from tests.gateway.helpers import (
    BASE_URL,
    FILE_ID,
    assert_secret_free,
    client_for,
    settings,
    uploaded_file,
    validating_batch,
)

FILE_ROUTES = {
    Dialect.KONG: f"{BASE_URL}/files/{FILE_ID}",
    Dialect.OPENAI: f"{BASE_URL}/v1/files/{FILE_ID}",
    Dialect.AZURE: f"{BASE_URL}/openai/files/{FILE_ID}",
}
CREATE_URL = f"{BASE_URL}/batches"
AZURE_NOT_PROCESSED = (
    "The input file '{file}' is in '{state}' state. Only files with status 'Processed' are "
    "accepted for batch inferencing. Please check the file status and try again"
)


# -- retrieving a file ---------------------------------------------------


@pytest.mark.parametrize("dialect", list(Dialect))
async def test_get_file_reads_the_file_object_where_each_dialect_has_it(dialect):
    with respx.mock(assert_all_called=True) as mock:
        route = mock.get(FILE_ROUTES[dialect]).respond(200, json=uploaded_file(status="pending"))
        async with client_for(settings(dialect)) as client:
            file = await client.get_file(FILE_ID)

    assert (file.id, file.status, file.status_details) == (FILE_ID, FileStatus.PENDING, None)
    params = route.calls.last.request.url.params
    assert ("api-version" in params) == (dialect is Dialect.AZURE)


@pytest.mark.parametrize(
    ("sent", "status"),
    [
        ("processed", FileStatus.PROCESSED),
        ("Processed", FileStatus.PROCESSED),
        ("uploaded", FileStatus.UPLOADED),
        ("pending", FileStatus.PENDING),
        ("running", FileStatus.PENDING),
        ("error", FileStatus.ERROR),
        ("deleting", FileStatus.DELETED),
        ("deleted", FileStatus.DELETED),
        ("something-new", None),
        (None, None),
    ],
)
async def test_file_status_is_normalised(sent, status):
    with respx.mock() as mock:
        mock.get(FILE_ROUTES[Dialect.KONG]).respond(200, json=uploaded_file(status=sent))
        async with client_for(settings()) as client:
            file = await client.get_file(FILE_ID)

    assert file.status == status


async def test_a_failed_file_carries_the_gateway_reason():
    body = uploaded_file(status="error", status_details="Invalid file format: line 2.")
    with respx.mock() as mock:
        mock.get(FILE_ROUTES[Dialect.AZURE]).respond(200, json=body)
        async with client_for(settings(Dialect.AZURE)) as client:
            file = await client.get_file(FILE_ID)

    assert file.status is FileStatus.ERROR
    assert file.status_details == "Invalid file format: line 2."


async def test_structured_status_details_are_kept_as_text():
    body = uploaded_file(status="error", status_details={"code": "bom", "message": "BOM found"})
    with respx.mock() as mock:
        mock.get(FILE_ROUTES[Dialect.KONG]).respond(200, json=body)
        async with client_for(settings()) as client:
            file = await client.get_file(FILE_ID)

    assert file.status_details is not None and "BOM found" in file.status_details


# -- deleting a file -----------------------------------------------------


@pytest.mark.parametrize("dialect", list(Dialect))
async def test_delete_file_says_whether_it_deleted(dialect):
    gone = {"error": {"message": f"No such File object: {FILE_ID}", "type": "invalid_request"}}
    with respx.mock(assert_all_called=True) as mock:
        route = mock.delete(FILE_ROUTES[dialect])
        route.side_effect = [
            httpx.Response(200, json={"id": FILE_ID, "object": "file", "deleted": True}),
            httpx.Response(404, json=gone),
        ]
        async with client_for(settings(dialect)) as client:
            first = await client.delete_file(FILE_ID)
            second = await client.delete_file(FILE_ID)

    assert (first, second) == (True, False)


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(404, json={"message": "no Route matched with those values"}),
        httpx.Response(405, json={"message": "Method not allowed"}),
        httpx.Response(404, text="<html><body>Not Found</body></html>"),
    ],
)
async def test_delete_file_without_a_delete_route_says_so(answer):
    with respx.mock() as mock:
        mock.delete(FILE_ROUTES[Dialect.KONG]).mock(return_value=answer)
        async with client_for(settings()) as client:
            with pytest.raises(RouteNotSupportedError) as caught:
                await client.delete_file(FILE_ID)

    assert FILE_ID in caught.value.message
    assert_secret_free(caught.value)


# -- did a failed create make a batch? -----------------------------------


async def _create_error(answer: httpx.Response | Exception) -> GatewayError:
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(CREATE_URL)
        if isinstance(answer, Exception):
            route.side_effect = answer
        else:
            route.mock(return_value=answer)
        async with client_for(settings()) as client:
            with pytest.raises(GatewayError) as caught:
                await client.create_batch(input_file_id=FILE_ID, endpoint="/v1/chat/completions")
    assert_secret_free(caught.value)
    return caught.value


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("timed out waiting for the answer"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("connection reset by peer"),
        httpx.WriteTimeout("timed out sending the body"),
        httpx.WriteError("broken pipe"),
    ],
    ids=type,
)
async def test_a_create_cut_off_after_sending_has_an_unknown_outcome(failure):
    error = await _create_error(failure)

    assert error.outcome_unknown
    assert error.retryable


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("connection refused"),
        httpx.ConnectTimeout("no connection within 10 s"),
        httpx.PoolTimeout("no free connection"),
    ],
    ids=type,
)
async def test_a_create_that_never_left_made_nothing(failure):
    error = await _create_error(failure)

    assert not error.outcome_unknown
    assert error.retryable


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_a_create_answered_5xx_has_an_unknown_outcome(status):
    error = await _create_error(httpx.Response(status, json={"error": {"message": "upstream"}}))

    assert error.outcome_unknown
    assert error.retryable
    assert error.status_code == status


@pytest.mark.parametrize(("status", "retryable"), [(400, False), (404, False), (429, True)])
async def test_a_create_answered_4xx_made_nothing(status, retryable):
    error = await _create_error(httpx.Response(status, json={"error": {"message": "no"}}))

    assert not error.outcome_unknown
    assert error.retryable == retryable


async def test_a_create_answered_2xx_with_an_unreadable_body_may_have_made_a_batch():
    error = await _create_error(httpx.Response(200, text="<html>proxy says hi</html>"))

    assert isinstance(error, RetryableGatewayError)
    assert error.outcome_unknown


async def test_a_successful_create_is_not_an_error():
    with respx.mock() as mock:
        mock.post(CREATE_URL).respond(200, json=validating_batch())
        async with client_for(settings()) as client:
            batch = await client.create_batch(
                input_file_id=FILE_ID, endpoint="/v1/chat/completions"
            )
    assert batch.input_file_id == FILE_ID


# -- Azure refuses a batch on a file it has not processed ----------------


@pytest.mark.parametrize("state", ["pending", "running", "Uploaded"])
async def test_a_batch_refused_on_a_file_still_processing_is_retryable(state):
    body = {"error": {"message": AZURE_NOT_PROCESSED.format(file=FILE_ID, state=state)}}

    error = await _create_error(httpx.Response(400, json=body))

    assert isinstance(error, InputFileNotReadyError)
    assert error.retryable and not error.outcome_unknown
    assert FILE_ID in error.message


async def test_a_batch_refused_on_a_failed_file_is_final():
    body = {"error": {"message": AZURE_NOT_PROCESSED.format(file=FILE_ID, state="error")}}

    error = await _create_error(httpx.Response(400, json=body))

    assert isinstance(error, RejectedByGatewayError)
    assert not error.retryable
