"""gravity: profile-grounded synthetic preferences for personalized LLM writing."""

__version__ = "0.1.0"
