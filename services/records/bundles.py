"""Chart pages as FHIR Bundles, each entry at the URL it is read at in the FHIR base."""

from __future__ import annotations

from flask import request

from services.records.chart import Page, RecordView
from shared.fhir import Entry, base_url, page_url, searchset


def bundle_of(page: Page, self_url: str) -> bytes:
    """A searchset of a page of views; `total` only when the page is all there is."""
    entries = [Entry(full_url(view), view.content) for view in page.items]
    whole = page.next_cursor is None and "_cursor=" not in self_url
    return searchset(
        entries, self_url=self_url, next_url=next_url(page), total=len(entries) if whole else None
    )


def full_url(view: RecordView) -> str:
    """Where the FHIR base serves the view's resource."""
    return f"{base_url()}/{relative_url(view)}"


def relative_url(view: RecordView) -> str:
    return f"{view.category}/{view.fhir_id}"


def next_url(page: Page) -> str | None:
    """The request's URL, moved on to the page after this one."""
    if page.next_cursor is None:
        return None
    return page_url(request.base_url, request.args.items(multi=True), page.next_cursor)
