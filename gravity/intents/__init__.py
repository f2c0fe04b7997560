"""The intent knowledge graph: reader intents per item by the LLM (``extract``), canonical
intents (``canon``), the graph tables (``graph``, built by ``build``), the translation-embedding
scorer with its intent paths (``scorer``), and the evaluation against baselines
(``evaluate``, ``metrics``). The CLI is ``cli.intents_app`` (``gravity intents``)."""
