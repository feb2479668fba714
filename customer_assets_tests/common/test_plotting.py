import subprocess
import sys


def test_plt_loads_pyplot_with_agg_on_first_use_only():
    code = (
        "import sys\n"
        "from customer_assets.common.plotting import plt\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported at import time'\n"
        "fig, ax = plt.subplots()\n"
        "ax.plot([1, 2, 3])\n"
        "plt.close(fig)\n"
        "assert 'matplotlib.pyplot' in sys.modules\n"
        "print(plt.get_backend())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().lower() == "agg"
