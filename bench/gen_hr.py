#!/usr/bin/env python3
"""Deterministic HR CSV generator for the plan benchmark.

gen_hr.py N OUT_BASE OUT_CHANGED
  OUT_BASE:    N users (~150 bytes a row)
  OUT_CHANGED: the same population with 1% of users changed, 0.5% gone and 0.5% new.
"""
import random
import sys

FIRST = ["Anna", "Zoë", "José", "Bjørn", "Chloé", "Wei", "Omar", "Liam", "Sofía", "Noah", "Mia", "Ali"]
LAST = ["García", "Smith", "Müller", "O'Brien", "Dubois", "Tanaka", "Kowalska", "Haddad", "Nguyen", "Rossi"]
DEPTS = ["R&D", "Sales & Marketing", "Finance", "Operations", "Legal", "Support", "HR", "IT"]
HEADER = "employee_id,login_id,email,first_name,last_name,active,country,currency,locale,ledger,org_unit1,org_unit2,manager_employee_id,custom1\n"


def row(i, rnd, variant=0):
    first = FIRST[(i + variant) % len(FIRST)]
    last = LAST[(i * 7 + variant) % len(LAST)]
    dept = DEPTS[(i + variant * 3) % len(DEPTS)]
    mgr = "" if i < 10 else "E%07d" % (i // 10)
    login = "user%07d@corp.example.com" % i
    cc = rnd.choice(["US", "GB", "DE", "FR"])
    cur = {"US": "USD", "GB": "GBP", "DE": "EUR", "FR": "EUR"}[cc]
    loc = {"US": "en_US", "GB": "en_GB", "DE": "de_DE", "FR": "fr_FR"}[cc]
    return "E%07d,%s,%s,%s,%s,true,%s,%s,%s,DEFAULT,\"%s\",CC-%05d,%s,Site %03d\n" % (
        i, login, login, first, last, cc, cur, loc, dept, i % 99991, mgr, i % 997)


def main():
    n = int(sys.argv[1])
    base, changed = sys.argv[2], sys.argv[3]
    rnd = random.Random(42)
    rows = [row(i, random.Random(i)) for i in range(n)]
    with open(base, "w", encoding="utf-8") as f:
        f.write(HEADER)
        f.writelines(rows)
    idx = list(range(10, n))  # never the top of the tree
    rnd.shuffle(idx)
    k = n // 100
    g = n // 200
    change = set(idx[:k])
    gone = set(idx[k:k + g])
    # Keep managers of remaining users: only leaves (no reports) vanish.
    gone = {i for i in gone if i * 10 >= n}
    with open(changed, "w", encoding="utf-8") as f:
        f.write(HEADER)
        for i in range(n):
            if i in gone:
                continue
            f.write(row(i, random.Random(i), 1) if i in change else rows[i])
        for j in range(n // 200):
            f.write(row(n + j, random.Random(n + j)).replace(",E%07d," % ((n + j) // 10), ",E%07d," % (j + 10)))
    print("changed=%d gone=%d new=%d" % (len(change), len(gone), n // 200), file=sys.stderr)


if __name__ == "__main__":
    main()
