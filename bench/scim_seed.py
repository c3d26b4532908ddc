#!/usr/bin/env python3
"""Seeds N users into a SCIM service through /Bulk (1000 operations per request).

Employee i (E000007) reports to (i - 1) // 10; managers are created first, so a report refers
to its manager by bulkId within a request and by SCIM id across requests.
Usage: scim_seed.py BASE_URL TOKEN N
"""
import json
import sys
import time
import urllib.request

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GIVEN = ["Zoë", "José", "Ana", "Søren", "Łukasz", "Chloé", "Bjørn", "Renée"]
DEPTS = ["R&D", "Sales & Marketing", "Finance", "Ops"]


def user(i, manager_ref):
    ent = {"employeeNumber": f"E{i:06d}", "department": DEPTS[i % 4],
           "costCenter": f"CC{i % 97}", "division": f"Div{i % 5}"}
    if manager_ref:
        ent["manager"] = {"value": manager_ref}
    return {
        "schemas": [CORE, ENT],
        "userName": f"user{i}@example.com",
        "name": {"givenName": GIVEN[i % len(GIVEN)], "familyName": f"Family{i}", "middleName": "Quinn"},
        "emails": [{"value": f"user{i}@example.com", "type": "work", "primary": True}],
        "active": True,
        "locale": "en-US",
        "addresses": [{"type": "work", "country": "US"}],
        ENT: ent,
    }


def main():
    base, token, n = sys.argv[1].rstrip("/"), sys.argv[2], int(sys.argv[3])
    ids = {}
    t0 = time.time()
    for lo in range(0, n, 1000):
        ops = []
        for i in range(lo, min(n, lo + 1000)):
            m = (i - 1) // 10 if i > 0 else None
            ref = None if m is None else (ids[m] if m in ids else f"bulkId:b{m}")
            ops.append({"method": "POST", "path": "/Users", "bulkId": f"b{i}", "data": user(i, ref)})
        body = json.dumps({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                           "failOnErrors": 1, "Operations": ops}).encode()
        req = urllib.request.Request(base + "/Bulk", data=body, method="POST", headers={
            "Authorization": "Bearer " + token, "Content-Type": "application/scim+json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            res = json.load(r)
        for op in res["Operations"]:
            if op.get("status") != "201":
                sys.exit(f"bulk operation failed: {op}")
            ids[int(op["bulkId"][1:])] = op["location"].rsplit("/", 1)[1]
    print(f"seeded {n} users in {time.time() - t0:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
