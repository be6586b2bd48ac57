"""mkdocs hooks of the course site; the code lives in facesegm_utils.website (tested there)."""

from facesegm_utils.website import on_page_content

__all__ = ["on_page_content"]
