"""Turning the crank of a conversation: start it, answer it, throw a network error into it."""

from __future__ import annotations

from ivrstream.protocol.conversation import (
    Conversation,
    Finished,
    NetworkError,
    Request,
    Response,
    Sleep,
    resume,
)


def fetch() -> Conversation[str]:
    while True:
        try:
            response = yield Request("GET", "https://api.example.test/x")
        except NetworkError:
            yield Sleep(1.0)
            continue
        assert isinstance(response, Response)
        return response.body.decode()


def test_resume_starts_answers_and_throws_until_the_conversation_returns():
    conversation = fetch()
    assert resume(conversation, None) == Request("GET", "https://api.example.test/x")
    assert resume(conversation, NetworkError("refused")) == Sleep(1.0)
    assert isinstance(resume(conversation, 101.0), Request)  # slept: ask again
    assert resume(conversation, Response(200, {}, b"done")) == Finished("done")
