"""Pages of the journal: page numbers (the contract's `count`/`next`/`previous`/`results`), or
keyset pages when the caller sends `cursor` (an empty `cursor=` asks for the first one).

A page number is an OFFSET, and counting a wallet's whole history is a scan: on a busy wallet
with a million transfers, page 25,000 costs a walk over half a million rows before answering.
A cursor page is `WHERE id < <last id seen> ORDER BY id DESC LIMIT n`, an index range read,
as fast on the last page as on the first. Cursor pages carry no `count` and follow the journal's
order (newest first, by id); `ordering` applies to page numbers only.
"""

from django.conf import settings
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.response import Response

from core.pagination import StandardPagination
from wallet.selectors import history_window


class JournalCursorPagination(CursorPagination):
    ordering = "-id"
    page_size_query_param = "page_size"

    @property
    def max_page_size(self):
        return settings.MAX_PAGE_SIZE

    def decode_cursor(self, request):
        cursor = super().decode_cursor(request)
        # A position is an id; anything else would reach the database as a malformed filter.
        if cursor is not None and cursor.position is not None and not cursor.position.isdigit():
            raise NotFound(self.invalid_cursor_message)
        return cursor

    def get_ordering(self, request, queryset, view):
        # Only a unique key makes a keyset: ties on created_at (a bulk payout shares one
        # timestamp) or amount would need offsets again.
        return (self.ordering,)


class TransferPagination(StandardPagination):
    """Page numbers by default; keyset pages when the query has `cursor`."""

    cursor_query_param = "cursor"

    def paginate_queryset(self, queryset, request, view=None):
        self._cursor = None
        if self.cursor_query_param not in request.query_params:
            return super().paginate_queryset(queryset, request, view)
        if request.query_params.get("ordering") or self.page_query_param in request.query_params:
            raise ValidationError(
                {self.cursor_query_param: ["Cursor pages follow the journal order; drop `ordering` and `page`."]}
            )
        self._require_positive_integer(request, self.page_size_query_param)
        self._cursor = JournalCursorPagination()
        wallet_id = view.keyset_wallet_id() if hasattr(view, "keyset_wallet_id") else None
        if wallet_id is not None and set(request.query_params) <= {self.cursor_query_param, "page_size"}:
            queryset = self._one_wallet_window(queryset, request, wallet_id)
        return self._cursor.paginate_queryset(queryset.order_by(), request, view)

    def _one_wallet_window(self, queryset, request, wallet_id):
        cursor = self._cursor.decode_cursor(request)
        limit = self._cursor.get_page_size(request) + 1 + (cursor.offset if cursor else 0)
        position = int(cursor.position) if cursor and cursor.position is not None else None
        if cursor is not None and cursor.reverse:
            return history_window(queryset=queryset, wallet_id=wallet_id, after=position, limit=limit)
        return history_window(queryset=queryset, wallet_id=wallet_id, before=position, limit=limit)

    def get_paginated_response(self, data):
        if self._cursor is None:
            return super().get_paginated_response(data)
        return Response(
            {"next": self._cursor.get_next_link(), "previous": self._cursor.get_previous_link(), "results": data}
        )

    def get_paginated_response_schema(self, schema):
        paginated = super().get_paginated_response_schema(schema)
        paginated["required"] = ["results"]
        paginated["properties"]["count"]["description"] = "Page-number pages only; cursor pages have none."
        return paginated

    def get_schema_operation_parameters(self, view):
        cursor = {
            "name": self.cursor_query_param,
            "required": False,
            "in": "query",
            "description": "Keyset paging, newest first: empty for the first page, then the value in the "
            "`next` link. As fast on the last page of a long history as on the first; no `count`.",
            "schema": {"type": "string"},
        }
        return [*super().get_schema_operation_parameters(view), cursor]


def history_cursor_path(*, queryset, position: int, path="/api/wallet/transactions/") -> str:
    """The keyset URL of the page that starts after the `position`-th newest transfer of `queryset`
    (the benchmark's deep pages)."""
    boundary = queryset.order_by("-id").values_list("pk", flat=True)[position]
    paginator = JournalCursorPagination()
    paginator.base_url = path
    return paginator.encode_cursor(Cursor(offset=0, reverse=False, position=str(boundary)))
