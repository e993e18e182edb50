"""Loading trained models for inference, and chatting with them (terminal, web demo, MMBench)."""

from .chat_session import ChatSession
from ..errors import UserInputError
from .images import open_image
from .loading import load_model_and_processor

__all__ = ["ChatSession", "UserInputError", "load_model_and_processor", "open_image"]
