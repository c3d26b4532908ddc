#!/usr/bin/env python3
"""Deterministic HR CSV generator for the plan benchmark.

gen_hr.py [--v4] N OUT_BASE OUT_CHANGED
  OUT_BASE:    N users (~150 bytes a row)
  OUT_CHANGED: the same population with 1% of users changed, 0.5% gone and 0.5% new.
  --v4:        one more column, expense_approver: Y for every user who is someone's manager in
               either file (UPS v4 refuses a report approver without the EXP_APPROVER role), N
               otherwise. Without it the output is unchanged.
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
    args = sys.argv[1:]
    v4 = "--v4" in args
    args = [a for a in args if a != "--v4"]
    n = int(args[0])
    base, changed = args[1], args[2]
    header = HEADER.replace("\n", ",expense_approver\n") if v4 else HEADER
    rnd = random.Random(42)
    rows = [row(i, random.Random(i)) for i in range(n)]
    if v4:
        # A manager of the base file (i // 10 for every i >= 10) or of a new user in the
        # changed file (j + 10) is an expense approver.
        new = n // 200

        def approver(i):
            return "Y" if (i >= 1 and i * 10 < n) or 10 <= i < 10 + new else "N"

        def tag(i, line):
            return line[:-1] + "," + approver(i) + "\n"
    else:
        def tag(i, line):
            return line
    rows = [tag(i, r) for i, r in enumerate(rows)]
    with open(base, "w", encoding="utf-8") as f:
        f.write(header)
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
        f.write(header)
        for i in range(n):
            if i in gone:
                continue
            f.write(tag(i, row(i, random.Random(i), 1)) if i in change else rows[i])
        for j in range(n // 200):
            f.write(tag(n + j, row(n + j, random.Random(n + j)).replace(",E%07d," % ((n + j) // 10), ",E%07d," % (j + 10))))
    print("changed=%d gone=%d new=%d" % (len(change), len(gone), n // 200), file=sys.stderr)


if __name__ == "__main__":
    main()
