from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "playground.chat"

    def ready(self) -> None:
        """Wire what dispatch starts and who delivers the outbox's events (neither module
        imports the app's others: no import circle)."""
        from . import branching, dispatch, generation, outbox, publish, tasks

        outbox.install(publish.deliver)

        dispatch.install(dispatch.Jobs(
            generate=generation.generation_run,
            fanout_finished=lambda fanout_id: branching.fanout_finished(fanout_id=fanout_id),
            background=tasks.sweep_forever,
        ))
