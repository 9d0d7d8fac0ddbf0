"""Controllers that live inside the API server process (kube-apiserver's and kube-controller-manager's):
each module is one controller; `ControllerManager` prepares them before serving and runs them afterwards."""

from __future__ import annotations

import asyncio

from isthmus.aio import cancel_all
from isthmus.local.apiserver.controllers.base import Controller, ControllerContext, SharedWorkers
from isthmus.local.apiserver.controllers.bootstrap import Bootstrap
from isthmus.local.apiserver.controllers.crds import CrdController
from isthmus.local.apiserver.controllers.daemonsets import DaemonSetController
from isthmus.local.apiserver.controllers.deployments import DeploymentController
from isthmus.local.apiserver.controllers.endpoints import EndpointsController
from isthmus.local.apiserver.controllers.endpointslices import EndpointSliceController
from isthmus.local.apiserver.controllers.garbage import GarbageCollector
from isthmus.local.apiserver.controllers.jobs import JobController
from isthmus.local.apiserver.controllers.mirroring import EndpointSliceMirroringController
from isthmus.local.apiserver.controllers.namespaces import NamespaceController
from isthmus.local.apiserver.controllers.rbac import ClusterRoleAggregation, RbacBootstrap
from isthmus.local.apiserver.controllers.replicasets import ReplicaSetController
from isthmus.local.apiserver.controllers.scheduler import Scheduler
from isthmus.local.apiserver.controllers.serviceaccounts import NamespaceDefaults, TokenSecrets
from isthmus.local.apiserver.controllers.statefulsets import StatefulSetController

__all__ = ["Controller", "ControllerContext", "ControllerManager"]


class ControllerManager:
    """The controllers of one API server, in the order they prepare."""

    def __init__(self, ctx: ControllerContext, extra: list[type[Controller]] | None = None) -> None:
        kinds: list[type[Controller]] = [
            SharedWorkers,  # the informers and the Event writer the controllers below share
            CrdController,
            Bootstrap,
            NamespaceController,
            GarbageCollector,
            RbacBootstrap,
            ClusterRoleAggregation,
            NamespaceDefaults,
            TokenSecrets,
            DeploymentController,
            ReplicaSetController,
            DaemonSetController,
            StatefulSetController,
            JobController,
            Scheduler,
            EndpointsController,
            EndpointSliceController,
            EndpointSliceMirroringController,
        ]
        self.controllers = [kind(ctx) for kind in [*kinds, *(extra or [])]]
        self._tasks: list[asyncio.Task[None]] = []

    async def prepare(self) -> None:
        for controller in self.controllers:
            await controller.prepare()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(c.run(), name=c.name) for c in self.controllers]

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        self._tasks.clear()
