"""`orbitmq admin user ...` and `orbitmq admin acl ...`: users and ACL policies, kept by the controllers.

    orbitmq admin user create ACCESS_KEY [--secret S | --secret-file F] [--admin]   (create or update)
    orbitmq admin user delete ACCESS_KEY
    orbitmq admin user list
    orbitmq admin acl set ACCESS_KEY --resource TOPIC:orders --actions pub,sub [--decision allow|deny]
    orbitmq admin acl delete ACCESS_KEY [--resource R]       (one entry, or the user's whole policy)
    orbitmq admin acl list [ACCESS_KEY]

Resources: TOPIC:name, TOPIC:prefix*, TOPIC:* and the same for GROUP. Actions: pub, sub, create,
admin, all. A request needs an entry that allows it and none that denies it (deny wins); admin
users may do everything. These commands are signed as an admin user (--credentials-file F holding
ACCESS_KEY:SECRET, or $ORBITMQ_CREDENTIALS=ACCESS_KEY:SECRET) or with the cluster secret
(--cluster-secret-file, or $ORBITMQ_CLUSTER_SECRET_FILE). Without --secret, `user create` makes a
random secret and prints it once.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

CREDENTIALS_ENV = "ORBITMQ_CREDENTIALS"


def admin_credentials(path: str) -> Any:
    """The admin tools' user: `path` (ACCESS_KEY:SECRET) or $ORBITMQ_CREDENTIALS, else None."""
    from orbitmq.common.credentials import from_env_or_file

    return from_env_or_file(path, CREDENTIALS_ENV)


def _common() -> argparse.ArgumentParser:
    from orbitmq.cli.admin import connection_flags

    c = argparse.ArgumentParser(add_help=False)
    connection_flags(c, top_level=False)
    c.add_argument("--credentials-file", default="", help="ACCESS_KEY:SECRET of an admin user to sign with "
                   f"(default ${CREDENTIALS_ENV})")
    c.add_argument("--cluster-secret-file", default="", help="sign with the cluster secret instead "
                   "(default $ORBITMQ_CLUSTER_SECRET_FILE)")
    c.add_argument("--timeout", type=float, default=5.0, help="RPC timeout in seconds")
    return c


def register_admin(groups: argparse._SubParsersAction) -> None:
    """Add `user` and `acl` under `orbitmq admin`."""
    common = _common()
    fmt = argparse.RawDescriptionHelpFormatter
    p = groups.add_parser("user", help="users (access key, secret, admin flag)", description=__doc__,
                          formatter_class=fmt)
    us = p.add_subparsers(dest="admin_cmd", metavar="CMD")
    c = us.add_parser("create", parents=[common], help="create or update a user")
    c.add_argument("access_key")
    c.add_argument("--secret", default="", help="the secret key (default: a new random one, printed once)")
    c.add_argument("--secret-file", default="", help="read the secret key from this file")
    c.add_argument("--admin", action="store_true", help="an admin user may do everything")
    c.set_defaults(func=_user_create)
    c = us.add_parser("delete", parents=[common], help="delete a user and its policy")
    c.add_argument("access_key")
    c.set_defaults(func=_user_delete)
    c = us.add_parser("list", parents=[common], help="list users (no secrets)")
    c.set_defaults(func=_list)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    a = groups.add_parser("acl", help="ACL policies: per user, resource, actions, allow/deny", description=__doc__,
                          formatter_class=fmt)
    acs = a.add_subparsers(dest="admin_cmd", metavar="CMD")
    c = acs.add_parser("set", parents=[common], help="set a user's entry for one resource (replaces it)")
    c.add_argument("access_key")
    c.add_argument("--resource", required=True, help="TOPIC:name, TOPIC:prefix*, GROUP:name, GROUP:prefix*")
    c.add_argument("--actions", required=True, help="comma list of pub, sub, create, admin, all")
    c.add_argument("--decision", default="allow", choices=["allow", "deny"])
    c.set_defaults(func=_acl_set)
    c = acs.add_parser("delete", parents=[common], help="delete one entry, or the user's whole policy")
    c.add_argument("access_key")
    c.add_argument("--resource", default="")
    c.set_defaults(func=_acl_delete)
    c = acs.add_parser("list", parents=[common], help="list policies")
    c.add_argument("access_key", nargs="?", default="")
    c.set_defaults(func=_list)
    a.set_defaults(func=lambda a_: (a.print_help(), 2)[1])


def _run(args: argparse.Namespace, body: Callable[[Any], Awaitable[int]]) -> int:
    from orbitmq.cli.admin_controller import _run as run_controller

    return run_controller(args, body, credentials=lambda: admin_credentials(args.credentials_file))


def _done(args: argparse.Namespace, result: Any, what: str, extra: dict | None = None) -> int:
    if not result.ok:
        print(f"error: {result.code}: {result.reason}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"ok": True, **(extra or {})}, sort_keys=True))
    else:
        print(what)
    return 0


def _user_create(args: argparse.Namespace) -> int:
    secret, generated = args.secret, False
    if args.secret_file:
        try:
            secret = Path(args.secret_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            print(f"error: {args.secret_file}: {e}", file=sys.stderr)
            return 2
    if not secret:
        secret, generated = secrets.token_urlsafe(24), True

    async def body(c: Any) -> int:
        r = await c.auth_upsert_user(args.access_key, secret, args.admin)
        extra = {"access_key": args.access_key, "admin": args.admin}
        if generated:
            extra["secret"] = secret
        msg = f"user {args.access_key} saved" + (" (admin)" if args.admin else "")
        if generated:
            msg += f"\nsecret: {secret}   (shown once: keep it)"
        return _done(args, r, msg, extra)

    return _run(args, body)


def _user_delete(args: argparse.Namespace) -> int:
    async def body(c: Any) -> int:
        return _done(args, await c.auth_delete_user(args.access_key), f"user {args.access_key} deleted")

    return _run(args, body)


def _acl_set(args: argparse.Namespace) -> int:
    async def body(c: Any) -> int:
        r = await c.auth_set_acl(args.access_key, args.resource, args.actions.split(","), args.decision)
        return _done(args, r, f"{args.access_key}: {args.decision} {args.actions} on {args.resource}")

    return _run(args, body)


def _acl_delete(args: argparse.Namespace) -> int:
    async def body(c: Any) -> int:
        r = await c.auth_delete_acl(args.access_key, args.resource)
        return _done(args, r, f"{args.access_key}: deleted {args.resource or 'the whole policy'}")

    return _run(args, body)


def _list(args: argparse.Namespace) -> int:
    only = getattr(args, "access_key", "")

    async def body(c: Any) -> int:
        r = await c.auth_list()
        users = [{"access_key": u.access_key, "admin": u.admin} for u in r.users]
        entries = [{"access_key": e.access_key, "resource": e.resource, "actions": list(e.actions),
                    "decision": e.decision} for e in r.entries if not only or e.access_key == only]
        if args.json:
            print(json.dumps({"version": r.version, "users": users, "entries": entries}, sort_keys=True))
        elif args.admin_group == "user":
            for u in users:
                print(f"{u['access_key']:<32} {'admin' if u['admin'] else 'user'}")
        else:
            for e in entries:
                print(f"{e['access_key']:<24} {e['decision']:<6} {','.join(e['actions']):<20} {e['resource']}")
        return 0

    return _run(args, body)
