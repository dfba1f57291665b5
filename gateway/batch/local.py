"""The local engine: one process, ``--concurrency`` workers on a queue fed by the streamed listing."""

from __future__ import annotations

import asyncio

from gateway.batch.job import BatchOptions, Captioner, Job, on_interrupt, open_captioner, run_job
from gateway.batch.source import Item
from gateway.errors import OutputFailed
from gateway.settings import Settings


async def run_batch(options: BatchOptions, settings: Settings) -> int:
    return await run_job(options, settings, _run_local)


async def _run_local(job: Job) -> None:
    async with open_captioner(job.settings, job.options, job.s3) as captioner:
        await LocalRun(job, captioner).run()


class LocalRun:
    def __init__(self, job: Job, captioner: Captioner) -> None:
        self.job = job
        self.captioner = captioner
        self._workers = job.options.concurrency
        self._tasks: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        queue: asyncio.Queue[Item | None] = asyncio.Queue(maxsize=self._workers * 2)
        workers = [asyncio.create_task(self._worker(queue)) for _ in range(self._workers)]
        producer = asyncio.create_task(self._produce(queue))
        self._tasks = [producer, *workers]
        with on_interrupt(self._interrupt):
            results = await asyncio.gather(*self._tasks, return_exceptions=True)
        for outcome in results:  # an exception here is a bug in the engine, not in one image
            if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
                self.job.fatal = self.job.fatal or f"{type(outcome).__name__}: {outcome}"

    def _interrupt(self) -> None:
        # In-flight images are dropped: none has a line yet, so a resume captions them again.
        self.job.summary.interrupted = True
        self._cancel_all()

    def _cancel_all(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def _produce(self, queue: asyncio.Queue[Item | None]) -> None:
        try:
            async for item in self.job.pending():
                await queue.put(item)
        except Exception as exc:  # whatever ended the listing, the workers must still be released
            self.job.listing_failed(exc)
        for _ in range(self._workers):
            await queue.put(None)

    async def _worker(self, queue: asyncio.Queue[Item | None]) -> None:
        try:
            while (item := await queue.get()) is not None:
                await self.job.record(await self.captioner.caption_item(item))
        except OutputFailed as exc:
            self.job.fatal = str(exc)
            self._cancel_all()  # the producer may be blocked on a full queue
