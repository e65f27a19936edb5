"""Who may see and change what: the role rules every admin service applies itself.

The rules, in one place:

* ``admin`` (and the master key) sees and changes everything.
* ``team_admin`` sees and changes its own team's keys, users, usage and audit entries, and its
  team's metadata (not its name or model list: those grant access and are admin's).
* ``member`` sees and changes its own keys and sees its own user record and usage.
* ``viewer`` sees what its team's admin sees, except the audit log, and changes nothing.

Refusals are consistent: an object outside the caller's view is **404**, whether the request
reads or changes it, so a tenant cannot learn that another tenant's object exists. An object
inside the caller's view that the role may not change is **403**, and so is a request that
names another tenant explicitly (creating into team B, listing with ``team_id=B``): that
answer depends only on the caller, never on what exists.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, false, true

from sluice.policies.auth import Principal
from sluice.schema import GatewayError
from sluice.store.models import ROLES, ApiKey, Team, User

ADMIN, TEAM_ADMIN, MEMBER, VIEWER = ROLES
NOT_ADMIN_CALLER = "the admin API needs a master key or an admin's key"


def check_caller(caller: Principal) -> None:
    if caller.role not in ROLES or caller.kind == "anonymous":
        raise GatewayError("authentication", NOT_ADMIN_CALLER, code="admin_auth_required")


def is_admin(caller: Principal) -> bool:
    return caller.role == ADMIN


def forbidden(message: str) -> GatewayError:
    return GatewayError("permission", message, code="forbidden")


def not_found(what: str, ident: str) -> GatewayError:
    return GatewayError("not_found", f"{what} {ident!r} not found.", code=f"{what}_not_found")


def own_team(caller: Principal) -> str:
    """The team a non-admin caller acts for; an identity without one has nothing to manage."""
    if not caller.team_id:
        raise forbidden(f"a {caller.role} without a team has no team objects to manage")
    return caller.team_id


def _team_wide(caller: Principal) -> bool:
    return caller.role in (TEAM_ADMIN, VIEWER)


# --- keys -------------------------------------------------------------------------------------

def key_clause(caller: Principal) -> ColumnElement[bool]:
    """SQL condition selecting the keys the caller may see."""
    if is_admin(caller):
        return true()
    if _team_wide(caller):
        return ApiKey.team_id == caller.team_id if caller.team_id else false()
    if caller.role == MEMBER and caller.user_id:
        return ApiKey.user_id == caller.user_id
    return false()


def key_visible(caller: Principal, key: ApiKey) -> bool:
    if is_admin(caller):
        return True
    if _team_wide(caller):
        return caller.team_id is not None and key.team_id == caller.team_id
    return caller.role == MEMBER and caller.user_id is not None and key.user_id == caller.user_id


def require_key_writer(caller: Principal) -> None:
    if caller.role == VIEWER:
        raise forbidden("a viewer cannot change keys")


# --- users ------------------------------------------------------------------------------------

def user_clause(caller: Principal) -> ColumnElement[bool]:
    if is_admin(caller):
        return true()
    if _team_wide(caller):
        return User.team_id == caller.team_id if caller.team_id else false()
    return User.id == caller.user_id if caller.user_id else false()


def user_visible(caller: Principal, user: User) -> bool:
    if is_admin(caller):
        return True
    if _team_wide(caller):
        return caller.team_id is not None and user.team_id == caller.team_id
    return caller.user_id is not None and user.id == caller.user_id


def require_user_manager(caller: Principal) -> None:
    if caller.role not in (ADMIN, TEAM_ADMIN):
        raise forbidden(f"a {caller.role} cannot manage users")


# --- teams ------------------------------------------------------------------------------------

def team_clause(caller: Principal) -> ColumnElement[bool]:
    if is_admin(caller):
        return true()
    return Team.id == caller.team_id if caller.team_id else false()


def team_visible(caller: Principal, team: Team) -> bool:
    return is_admin(caller) or (caller.team_id is not None and team.id == caller.team_id)


def require_admin(caller: Principal, what: str) -> None:
    if not is_admin(caller):
        raise forbidden(f"only an admin can {what}")


def narrow_team_filter(caller: Principal, team_id: str | None) -> str | None:
    """A list filter on team: admins pass anything; team-wide roles get their own team."""
    if is_admin(caller):
        return team_id
    mine = own_team(caller)
    if team_id is not None and team_id != mine:
        raise forbidden("you can only see your own team's objects")
    return mine
