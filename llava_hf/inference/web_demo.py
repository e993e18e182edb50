"""The Gradio web demo: attach images, ask, watch the answer stream in.

Each browser tab gets its own `ChatSession` (kept in `gr.State`), so the KV cache of one visitor's
conversation is reused across that visitor's turns, exactly as in the terminal chat.
"""

import os
from collections.abc import Callable

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a demo server

import gradio as gr  # noqa: E402

from .chat_session import ChatSession  # noqa: E402
from ..errors import UserInputError  # noqa: E402
from .images import open_image  # noqa: E402

TITLE = "llava_hf chat"
INTRO = ("Attach images with the clip button, type a question, press Enter. Images go with the next question; "
         "any question may bring new ones.")


def respond(new_session: Callable[[], ChatSession], message, state):
    """One submit of the message box: `(box, shown conversation, state)` after each streamed piece. `state` is
    `(session, shown)` of this tab (None at first). Images sent with a question go with that turn, in any turn;
    images sent alone wait for the next question."""
    session, shown = state if state is not None else (new_session(), [])
    state = (session, shown)
    text = (message or {}).get("text", "").strip()
    files = (message or {}).get("files") or []
    try:
        images = [open_image(file_path(file)) for file in files]
    except UserInputError as error:
        gr.Warning(str(error))
        yield gr.MultimodalTextbox(value=message), shown, state
        return
    shown.extend({"role": "user", "content": {"path": file_path(file)}} for file in files)
    if not text:  # images only: they wait for the next question
        for image in images:
            session.add_image(image)
        yield gr.MultimodalTextbox(value=None), shown, state
        return
    shown.extend([{"role": "user", "content": text}, {"role": "assistant", "content": ""}])
    busy = gr.MultimodalTextbox(value=None, interactive=False)
    for piece in session.stream_reply(text, images):
        shown[-1]["content"] += piece
        yield busy, shown, state
    shown[-1]["content"] = session.turns[-1].answer
    yield busy, shown, state  # the box opens again in `.then` (build_demo), once this event has completed


def build_demo(new_session: Callable[[], ChatSession], title: str = TITLE) -> gr.Blocks:
    """A Blocks app whose conversations come from `new_session()` (one per browser tab)."""

    def respond_in_tab(message, state):
        yield from respond(new_session, message, state)

    def accept_input():
        return gr.MultimodalTextbox(interactive=True)

    def restart():
        return gr.MultimodalTextbox(value=None, interactive=True), [], None

    with gr.Blocks(title=title) as demo:
        gr.Markdown(f"## {title}\n{INTRO}")
        chatbot = gr.Chatbot(label="Conversation", elem_id="conversation", height=460)
        box = gr.MultimodalTextbox(file_types=["image"], file_count="multiple", show_label=False,
                                   placeholder="Ask about the image…", elem_id="message")
        new_conversation = gr.Button("New conversation", elem_id="new-conversation")
        state = gr.State(None)
        # Re-enabling the box from inside `respond` would let a fast user (or a test) submit while this event is
        # still finishing, and Gradio drops a submit that arrives then.
        box.submit(respond_in_tab, [box, state], [box, chatbot, state]).then(accept_input, None, [box])
        new_conversation.click(restart, None, [box, chatbot, state])
    return demo


def file_path(file) -> str:
    """Gradio hands uploads over as paths or as `{"path": ...}` dicts, depending on the version."""
    return file["path"] if isinstance(file, dict) else str(file)
