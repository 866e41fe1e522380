"""/api/v1/users: operators. POST and disable: platform_admin; GET: platform_admin, finance.

The create response carries a JWT for the new user (shown once; issue_operator_token). A
disabled user's tokens are refused (401) from then on.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError
from sqlalchemy import select

from serving.api.common import Limit, StartingAfter, page
from serving.auth import issue_operator_token
from serving.deps import AdminDep, OperatorDep, SessionDep, SettingsDep, WriteSessionDep
from serving.errors import not_found
from serving.schemas import Timestamp
from serving.services.users import EMAIL, create_user, disable_user
from warehouse.models import User

router = APIRouter(tags=["users"])


def _email(value: str) -> str:
    if not EMAIL.match(value):
        raise PydanticCustomError("invalid_email", "not an email address",
                                  {"code": "invalid_email"})
    return value


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: Annotated[str, AfterValidator(_email)] = Field(max_length=200)
    role: Literal["platform_admin", "finance"]
    token_days: int = Field(default=30, ge=1, le=365, description="lifetime of the returned JWT")


class UserOut(BaseModel):
    id: str
    object: Literal["user"] = "user"
    email: str
    role: str
    status: str
    created_at: Timestamp


class UserCreated(UserOut):
    token: str = Field(description="an operator JWT; shown once")


class UserList(BaseModel):
    data: list[UserOut]
    has_more: bool


def user_out(user: User) -> dict:
    return UserOut(id=user.id, email=user.email, role=user.role, status=user.status,
                   created_at=user.created_at).model_dump(mode="json")


@router.post("/users", status_code=201, response_model=UserCreated)
def post_user(body: UserCreate, admin: AdminDep, session: WriteSessionDep,
              settings: SettingsDep):
    user = create_user(session, email=body.email, role=body.role, actor=admin.actor)
    session.commit()
    token = issue_operator_token(settings, user, days=body.token_days)
    return JSONResponse({**user_out(user), "token": token}, status_code=201)


@router.get("/users", response_model=UserList)
def list_users(_reader: OperatorDep, session: SessionDep, limit: Limit = 20,
               starting_after: StartingAfter = None):
    return JSONResponse(page(session, select(User), User.id, limit=limit,
                             starting_after=starting_after, out=user_out))


@router.get("/users/{user_id}", response_model=UserOut)
def get_user(user_id: str, _reader: OperatorDep, session: SessionDep):
    user = session.get(User, user_id)
    if user is None:
        raise not_found("user", user_id)
    return JSONResponse(user_out(user))


@router.post("/users/{user_id}/disable", response_model=UserOut)
def post_disable(user_id: str, admin: AdminDep, session: WriteSessionDep):
    user = session.get(User, user_id, with_for_update=True)
    if user is None:
        raise not_found("user", user_id)
    disable_user(session, user=user, actor_user_id=admin.user_id, actor=admin.actor)
    session.commit()
    return JSONResponse(user_out(user))
