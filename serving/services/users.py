"""Operators (platform_admin, finance): created and disabled by a platform_admin."""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from serving.errors import ApiError
from serving.services import audit
from warehouse.ids import new_id
from warehouse.models import User

# An operator's e-mail: name@domain.tld, no spaces (POST /users and `clearhouse admin bootstrap`)
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def create_user(session: Session, *, email: str, role: str, actor: str) -> User:
    email = email.strip().lower()
    if session.scalars(select(User.id).where(func.lower(User.email) == email)).first():
        raise ApiError(409, "email_taken", f"a user with email {email!r} exists",
                       {"field": "email"})
    user = User(id=new_id("user"), email=email, role=role, status="active")
    session.add(user)
    audit.record(session, actor=actor, action="user.created", resource_type="user",
                 resource_id=user.id, details={"email": email, "role": role})
    return user


def disable_user(session: Session, *, user: User, actor_user_id: str | None, actor: str) -> User:
    """A disabled user's tokens stop working at once (authenticate checks the status)."""
    if user.id == actor_user_id:
        raise ApiError(409, "cannot_disable_self", "you cannot disable your own user")
    if user.status != "disabled":
        user.status = "disabled"
        audit.record(session, actor=actor, action="user.disabled", resource_type="user",
                     resource_id=user.id, details={"email": user.email, "role": user.role})
    return user
