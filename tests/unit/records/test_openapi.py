"""What records' OpenAPI document tells a client about its lists and its FHIR base."""

from caretrail.docs import openapi_document


def parameters(document: dict, path: str) -> set[tuple[str, str]]:
    return {(p["in"], p["name"]) for p in document["paths"][path]["get"]["parameters"]}


def test_the_records_list_documents_its_query_parameters_and_headers():
    document = openapi_document("records")
    listed = parameters(document, "/patients/{pid}/records")
    assert {("query", q) for q in ("limit", "cursor", "category", "code", "since")} <= listed
    assert ("header", "X-Purpose-Of-Use") in listed
    assert ("query", "cursor") in parameters(document, "/patients/{pid}/records/{rid}/versions")


def test_the_fhir_search_documents_its_parameters():
    document = openapi_document("records")
    searched = parameters(document, "/fhir/{resource_type}")
    assert {("query", q) for q in ("patient", "code", "date", "_count", "_sort")} <= searched
