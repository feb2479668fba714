import sys

from customer_assets.common.warm_imports import warm


def test_warm_imports_on_a_thread_once_and_ignores_failures():
    name = "email.mime.multipart"  # stdlib, not imported by the test session
    sys.modules.pop(name, None)
    thread = warm((name, "customer_assets_no_such_module"))
    assert thread is not None
    thread.join(30)
    assert name in sys.modules
    assert "customer_assets_no_such_module" not in sys.modules
    # already requested / imported: no new thread
    assert warm((name, "customer_assets_no_such_module")) is None
