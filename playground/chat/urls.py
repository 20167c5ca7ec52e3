from django.urls import path, re_path

from . import session_list_views, tree_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("sessions/new/", views.session_new, name="session-new"),
    path("sessions/<int:session_id>/", views.session_open, name="session"),
    path("sessions/<int:session_id>/settings/", views.session_settings, name="session-settings"),
    # The session list (session_list_views.py).
    path("sessions/list/", session_list_views.session_list, name="session-list"),
    path("sessions/<int:session_id>/item/", session_list_views.session_item, name="session-item"),
    path("sessions/<int:session_id>/rename/", session_list_views.session_rename, name="session-rename"),
    path("sessions/<int:session_id>/delete/", session_list_views.session_delete, name="session-delete"),
    path("sessions/<int:session_id>/restore/", session_list_views.session_restore, name="session-restore"),
    path("sessions/<int:session_id>/b/<int:branch_id>/", views.branch_view, name="branch"),
    path("sessions/<int:session_id>/b/<int:branch_id>/send/", views.message_send, name="message-send"),
    path("sessions/<int:session_id>/b/<int:branch_id>/predict/", views.composer_predict, name="composer-predict"),
    path("sessions/<int:session_id>/panel/", views.session_panel, name="session-panel"),
    re_path(r"^sessions/(?P<session_id>\d+)/export\.(?P<fmt>json|csv)$", views.session_export, name="session-export"),
    path("account/", views.account, name="account"),
    path("account/budgets/", views.account_budgets, name="account-budgets"),
    path("account/budgets/<slug:provider_slug>/", views.budget_save, name="budget-save"),
    path("turns/<int:turn_id>/stop/", views.turn_stop, name="turn-stop"),
    path("turns/<int:turn_id>/retry/", views.turn_retry, name="turn-retry"),
    # The conversation tree (tree_views.py).
    path("sessions/<int:session_id>/tree/", tree_views.session_tree, name="session-tree"),
    path("sessions/<int:session_id>/m/<int:message_id>/earlier/", views.message_earlier, name="message-earlier"),
    path("sessions/<int:session_id>/m/<int:message_id>/fork/", tree_views.message_fork, name="message-fork"),
    path("sessions/<int:session_id>/m/<int:message_id>/open/", tree_views.message_open, name="message-open"),
    path("sessions/<int:session_id>/m/<int:message_id>/edit/", tree_views.message_edit, name="message-edit"),
    path("sessions/<int:session_id>/m/<int:message_id>/regenerate/", tree_views.message_regenerate, name="message-regenerate"),
    path("sessions/<int:session_id>/m/<int:message_id>/fanout/", tree_views.message_fanout, name="message-fanout"),
    path("sessions/<int:session_id>/b/<int:branch_id>/rename/", tree_views.branch_rename, name="branch-rename"),
    path("sessions/<int:session_id>/b/<int:branch_id>/return/", tree_views.branch_return, name="branch-return"),
    path("sessions/<int:session_id>/fanout/<int:fanout_id>/", tree_views.fanout_view, name="fanout"),
    path("sessions/<int:session_id>/fanout/<int:fanout_id>/join/", tree_views.fanout_join, name="fanout-join"),
    path("sessions/<int:session_id>/fanout/<int:fanout_id>/status/", tree_views.fanout_status, name="fanout-status"),
    path("messages/<int:message_id>/", tree_views.message_state, name="message-state"),
]
