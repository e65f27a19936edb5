"""Identity administration: keys, teams, users, budgets, the audit log and usage queries.

Every service takes the database and the calling ``Principal`` and applies the role rules of
``sluice.admin.scope`` itself, so the HTTP layer, the CLI (through the HTTP API) and the web
console all get the same answers.
"""

from sluice.admin.audit import AuditQuery, query_audit
from sluice.admin.budgets import BudgetSpec, create_budget, delete_budget, get_budget, list_budgets, update_budget
from sluice.admin.durations import parse_duration
from sluice.admin.keys import DEFAULT_GRACE, KeySpec, create_key, get_key, list_keys, revoke_key, rotate_key, update_key
from sluice.admin.limits import Limits, ModelLimits, check_limits, check_priority
from sluice.admin.scope import NOT_ADMIN_CALLER, check_caller
from sluice.admin.teams import (TeamSpec, add_member, create_team, delete_team, get_team, list_members, list_teams,
                                remove_member, update_team)
from sluice.admin.usage import GROUPS, UsageFilter, usage_csv, usage_report
from sluice.admin.users import UserSpec, create_user, delete_user, get_user, list_users, update_user
from sluice.admin.cache import cache_report, purge_cache
from sluice.policies.auth import Principal

__all__ = [
    "AuditQuery", "BudgetSpec", "DEFAULT_GRACE", "GROUPS", "KeySpec", "Limits", "ModelLimits", "NOT_ADMIN_CALLER",
    "Principal", "TeamSpec", "UsageFilter", "UserSpec", "add_member", "cache_report", "check_caller", "check_limits",
    "check_priority", "create_budget", "create_key", "create_team", "create_user", "delete_budget", "delete_team",
    "delete_user", "get_budget", "get_key", "get_team", "get_user", "list_budgets", "list_keys", "list_members",
    "list_teams", "list_users", "parse_duration", "purge_cache", "query_audit", "remove_member", "revoke_key", "rotate_key",
    "update_budget", "update_key", "update_team", "update_user", "usage_csv", "usage_report",
]
