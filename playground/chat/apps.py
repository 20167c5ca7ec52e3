from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "playground.chat"

    def ready(self) -> None:
        """Wire what dispatch starts (it imports nothing of the app's: no import circle)."""
        from . import dispatch, generation, services, tasks

        dispatch.install(dispatch.Jobs(
            generate=generation.generation_run,
            fanout_finished=lambda fanout_id: services.fanout_finished(fanout_id=fanout_id),
            background=tasks.sweep_forever,
        ))
