"""The gateway's admin operations (the `admin` permission): accounts and their keys, deposits and
withdrawals (commands to collateral), and kill switches (commands to the router's risk checks)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from pydantic import BaseModel

from orderstream.common import records as r
from orderstream.gateway import api
from orderstream.gateway.auth import Principal
from orderstream.gateway.core import Core, answers, parse


class Admin(Core):
    """Admin operations."""

    @answers("admin.account")
    async def create_account(self, who: Principal, params: dict[str, Any]) -> dict[str, Any]:
        who.require("admin")
        a = parse(api.CreateAccount, params)
        key_id, secret = await self.keys.create_key(a.account_id, a.permissions)
        return {"account_id": a.account_id, "key_id": key_id, "secret": secret, "permissions": a.permissions}

    @answers("admin.deposit")
    async def deposit(self, who: Principal, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        command_id, _ = await self.admin_command(who, params, request_id, api.PostDeposit, r.Deposit)
        return {"command_id": command_id}

    @answers("admin.withdraw")
    async def withdraw(self, who: Principal, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        """Accepted here means sent: collateral answers Withdrawn or WithdrawalRejected on the user stream."""
        command_id, _ = await self.admin_command(who, params, request_id, api.PostWithdrawal, r.Withdraw)
        return {"command_id": command_id}

    @answers("admin.kill_switch")
    async def kill_switch(self, who: Principal, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        """Engage or lift a kill switch; the router applies it to new orders (compacted risk.commands)."""
        command_id, k = await self.admin_command(who, params, request_id, api.PostKillSwitch, r.SetKillSwitch)
        return {
            "command_id": command_id,
            "scope": str(k["scope"]),
            "target": k["target"],
            "engaged": k["engaged"],
        }

    async def admin_command(
        self,
        who: Principal,
        params: dict[str, Any],
        request_id: str,
        body: type[BaseModel],
        kind: type[r.Deposit | r.Withdraw | r.SetKillSwitch],
    ) -> tuple[str, dict[str, Any]]:
        """An admin request body (its fields are the command's) sent as that command; its id and fields."""
        who.require("admin")
        fields = parse(body, params).model_dump()
        command_id = f"gw-{uuid.uuid4().hex}"
        command = kind(command_id=command_id, ts_event=time.time_ns(), **fields)
        if isinstance(command, r.SetKillSwitch):
            await self.send("risk.commands", f"{command.scope}:{command.target}", command, request_id)
        else:
            await self.send("collateral.commands", fields["account_id"], command, request_id)
        return command_id, fields
