"""Policies (PROTOCOL.md, "Policies"), evaluated over distinct verified signers.

A signer is anything with ``org``, ``role`` and ``public_key``; signers are distinct by
their public key, so one member signing twice counts once.
"""

from .pb import common_pb2

Role = common_pb2.Role


class PolicyError(Exception):
    """The policy is malformed or not satisfied."""


def _distinct(signers):
    seen, out = set(), []
    for s in signers:
        if s.public_key not in seen:
            seen.add(s.public_key)
            out.append(s)
    return out


def _role_matches(wanted, actual):
    return wanted == Role.ROLE_UNSPECIFIED or wanted == actual


def _max_matching(principals, signers):
    """The size of a maximum matching of principals to distinct signers (augmenting
    paths; both sides are small)."""
    edges = [
        [
            j
            for j, s in enumerate(signers)
            if p.org == s.org and _role_matches(p.role, s.role)
        ]
        for p in principals
    ]
    owner = [None] * len(signers)

    def augment(i, seen):
        for j in edges[i]:
            if j in seen:
                continue
            seen.add(j)
            if owner[j] is None or augment(owner[j], seen):
                owner[j] = i
                return True
        return False

    return sum(1 for i in range(len(principals)) if augment(i, set()))


def evaluate(policy, signers, channel_orgs):
    """Raises PolicyError unless ``signers`` satisfy ``policy`` on a channel whose orgs
    are ``channel_orgs``."""
    signers = _distinct(signers)
    rule = policy.WhichOneof("rule")
    if rule is None:
        raise PolicyError("malformed policy: no rule")
    if rule == "any_member":
        p = policy.any_member
        for s in signers:
            if (not p.orgs or s.org in p.orgs) and (not p.roles or s.role in p.roles):
                return
        raise PolicyError(
            f"needs a signature of a member of {list(p.orgs) or 'any org'} "
            f"in role {[Role.Name(r) for r in p.roles] or 'any'}"
        )
    if rule == "n_out_of":
        p = policy.n_out_of
        if p.n == 0 or p.n > len(p.principals):
            raise PolicyError(f"malformed policy: n = {p.n} of {len(p.principals)}")
        matched = _max_matching(list(p.principals), signers)
        if matched < p.n:
            raise PolicyError(
                f"needs {p.n} of {len(p.principals)} principals signed by distinct "
                f"members, got {matched}"
            )
        return
    p = policy.majority
    orgs = set(p.orgs) if p.orgs else set(channel_orgs)
    signed = sum(
        1 for o in orgs if any(s.org == o and _role_matches(p.role, s.role) for s in signers)
    )
    if signed * 2 <= len(orgs):
        raise PolicyError(f"needs a majority of {len(orgs)} orgs, got {signed}")
