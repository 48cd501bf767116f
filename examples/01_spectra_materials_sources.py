# %% [markdown]
# # Spectra, materials and sources
#
# The foundation of every physdose dose calculation: a tube spectrum, the cross sections
# of the materials it crosses, and a source geometry that the Monte Carlo engine and the
# physics prior both read. Runs in well under a minute on a laptop CPU.

# %%
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import physdose as pd

out = Path("example-output")
out.mkdir(exist_ok=True)

# %% [markdown]
# ## A CT tube spectrum and its beam quality
# SpekPy models the tube; physdose filters it with its own cross sections, so HVLs agree
# with the transport physics. `hvl_mm_al=` finds the aluminium that gives a wanted HVL.

# %%
rqr9 = pd.Spectrum.from_tube(120.0, anode_angle_deg=11.0, hvl_mm_al=5.01)
print(f"HVL1 {float(rqr9.hvl_mm('Al')):.3f} mm Al, HVL2 {float(rqr9.hvl_mm('Al', order=2)):.3f} mm Al")
print(f"mean energy {float(rqr9.mean_energy_kev):.1f} keV")
print(
    f"air kerma at 1 m: {float(rqr9.air_kerma_per_fluence_gy_mm2 * rqr9.output_photons_per_mas_mm2) * 1e6:.1f} uGy/mAs"
)

# %% [markdown]
# Everything is differentiable: how fast does the HVL grow with added copper?

# %%
dhvl_dcu = jax.grad(lambda t: rqr9.filtered({"Cu": t}).hvl_mm("Al"))(0.1)
print(f"d HVL / d Cu at 0.1 mm Cu: {float(dhvl_dcu):.2f} mm Al per mm Cu")

# %% [markdown]
# ## Attenuation of tissues and shields

# %%
e = jnp.linspace(10.0, 150.0, 281)
fig, ax = plt.subplots(figsize=(6, 4))
for name in ("water", "cortical_bone", "lung", "adipose", "lead"):
    ax.loglog(e, pd.materials.get(name).mu_cm2_g(e), label=f"{name} mu/rho")
ax.loglog(e, pd.materials.get("water").mu_en_cm2_g(e), "k--", label="water mu_en/rho")
ax.set(xlabel="energy (keV)", ylabel="cm^2/g")
ax.legend(fontsize=7)
fig.savefig(out / "attenuation.png", dpi=110)

# %% [markdown]
# ## A helical CT scan and a C-arm exposure
# Each source reduces to one `Beam`; here its free-in-air kerma along z shows the
# scan's coverage, and the C-arm's geometry gives the interventional reference point dose.

# %%
ct = pd.sources.CTScan(
    rqr9,
    start_z_mm=-100.0,
    end_z_mm=100.0,
    pitch=1.0,
    collimation_mm=40.0,
    views_per_rotation=24,
    bowtie=pd.sources.Bowtie.body(),
)
beam = ct.beam()
z = jnp.linspace(-200.0, 200.0, 201)
points = jnp.stack([z, jnp.zeros_like(z), jnp.zeros_like(z)], axis=-1)
kerma_mgy = beam.air_kerma_per_photon_gy(points) * ct.source_photons() * 1e3
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(z, kerma_mgy)
ax.set(xlabel="z (mm)", ylabel="free-in-air kerma on axis (mGy)", title=f"{float(ct.mas):.0f} mAs helical scan")
fig.tight_layout()
fig.savefig(out / "ct_kerma_profile.png", dpi=110)

carm = pd.sources.CArm(rqr9, lao_deg=30.0, cra_deg=15.0)
irp = carm.focal_mm() + (float(carm.source_isocenter_mm) - 150.0) * carm.central_ray()
irp_mgy_per_mas = float(carm.beam().air_kerma_per_photon_gy(irp) * carm.beam().photons_per_mas()) * 1e3
print(f"C-arm IRP kerma: {irp_mgy_per_mas:.3f} mGy/mAs")
