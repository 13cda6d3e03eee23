"""CF NetCDF grids (time x lat x lon) into Zarr v3 arrays, units honoured.

Each data variable must carry a ``units`` attribute; temperatures arrive in K, degC or degF
and are stored in degC, PM2.5 in ug/m3 (kg m-3 converted). A variable without units, or in a
unit not of its kind, makes the file quarantined: a temperature read as degC when it was K would
be 273 degrees off. Stores are content-addressed (``arrays/<variable>/<sha256[:16]>.zarr``) and
each becomes one row of the ``array_store`` table, which carries versions and lineage.
"""

from __future__ import annotations

from pathlib import Path

import zipfile

import pandas as pd

from explorer.ingest.context import Context
from explorer.ingest.readers.base import Reader, ReaderError, ReadResult

NETCDF3 = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
HDF5 = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"

TEMPERATURE = {"K": lambda v: v - 273.15, "degC": lambda v: v, "Celsius": lambda v: v, "deg_C": lambda v: v,
               "°C": lambda v: v, "C": lambda v: v, "degF": lambda v: (v - 32.0) * 5.0 / 9.0, "°F": lambda v: (v - 32.0) * 5.0 / 9.0}
CONCENTRATION = {"ug/m3": lambda v: v, "ug m-3": lambda v: v, "µg/m3": lambda v: v, "ug/m^3": lambda v: v,
                 "kg m-3": lambda v: v * 1e9, "kg/m3": lambda v: v * 1e9}
KINDS = {"tasmax": ("degC", TEMPERATURE), "tasmin": ("degC", TEMPERATURE), "tas": ("degC", TEMPERATURE),
         "pm25": ("ug/m3", CONCENTRATION)}


class NetcdfGridReader(Reader):
    format = "cf_netcdf_grid"
    order = 60
    description = "CF NetCDF daily grids (tasmax, tasmin, tas in K/degC/degF; pm25 in ug/m3) -> Zarr"

    def sniff(self, path: Path, head: bytes) -> str | None:
        if not head:
            return "empty file (0 bytes)"
        if head[:4] in NETCDF3 or head[:8] == HDF5:
            return None
        return "not NetCDF (no CDF or HDF5 signature)"

    def read(self, path: Path, context: Context) -> ReadResult:
        import xarray as xr

        engine = "scipy" if path.open("rb").read(4) in NETCDF3 else "h5netcdf"
        try:
            ds = xr.open_dataset(path, engine=engine, decode_times=True)
        except Exception as exc:  # a damaged file or a missing optional engine: either way, not readable here
            raise ReaderError(f"cannot open as NetCDF ({type(exc).__name__}: {exc})") from None
        return store_grids(ds, context)


def is_zarr_zip(path: Path) -> bool:
    """A zip archive holding a Zarr store at its root (v3 ``zarr.json`` or v2 ``.zgroup``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError):
        return False
    return bool(names & {"zarr.json", ".zgroup", ".zattrs"})


class ZarrGridReader(Reader):
    """Zarr grids: a ``.zarr`` folder (ingest packs it into one zip, kept in the raw zone like any
    file) or a zipped Zarr store. Same variables, units and checks as the NetCDF reader."""

    format = "zarr_grid"
    order = 61
    description = "Zarr grids (a .zarr folder or zipped store), same variables and units as the NetCDF reader -> Zarr"

    def sniff(self, path: Path, head: bytes) -> str | None:
        if head[:4] != ZIP_MAGIC:
            return "not a Zarr store (no zip signature)"
        if not is_zarr_zip(path):
            return "a zip archive, but no zarr.json or .zgroup at its root"
        return None

    def read(self, path: Path, context: Context) -> ReadResult:
        import xarray as xr
        import zarr

        try:
            ds = xr.open_zarr(zarr.storage.ZipStore(path, mode="r"), consolidated=False, decode_times=True)
        except Exception as exc:
            raise ReaderError(f"cannot open as a Zarr store ({type(exc).__name__}: {exc})") from None
        return store_grids(ds, context)


def store_grids(ds, context) -> ReadResult:
    """Each variable of ``ds`` as a Zarr v3 store in its kind's common unit, one array_store row each."""
    with ds:
        if "time" in ds.coords:
            try:  # before anything is written: a calendar pandas cannot place (cftime) refuses the file
                pd.DatetimeIndex(ds["time"].values)
            except (TypeError, ValueError) as exc:
                raise ReaderError(f"time axis is not on the standard calendar ({exc}); convert it to "
                                  "proleptic_gregorian, e.g. with xarray's convert_calendar") from None
        rename = {k: v for k, v in (("latitude", "lat"), ("longitude", "lon")) if k in ds.dims}
        ds = ds.rename(rename)
        missing = [d for d in ("time", "lat", "lon") if d not in ds.dims]
        if missing:
            raise ReaderError(f"dimension(s) {', '.join(missing)} missing; expected time, lat, lon")
        rows = []
        for name, variable in ds.data_vars.items():
            if name not in KINDS:
                raise ReaderError(f"variable {name!r} is not one this suite stores ({', '.join(sorted(KINDS))})")
            unit = variable.attrs.get("units")
            target, conversions = KINDS[name]
            if unit is None:
                raise ReaderError(f"variable {name!r} has no units attribute; expected one of "
                                  f"{', '.join(conversions)} (a temperature in K read as degC is 273 degrees off)")
            if unit not in conversions:
                raise ReaderError(f"variable {name!r} has units {unit!r}; expected one of {', '.join(conversions)}")
            values = conversions[unit](variable.astype("float32"))
            values.attrs = {**{k: v for k, v in variable.attrs.items() if k != "units"}, "units": target,
                            "source_units": unit}
            store = Path(context.arrays_root) / name / f"{context.source_sha256[:16]}.zarr"
            store.parent.mkdir(parents=True, exist_ok=True)
            out = values.to_dataset(name=name).chunk({"time": 366, "lat": -1, "lon": -1})
            for variable_name in out.variables:  # a Zarr v2 source's codecs do not fit a v3 store
                out[variable_name].encoding = {}
            out.to_zarr(store, mode="w", zarr_format=3, consolidated=False)
            times = pd.DatetimeIndex(ds["time"].values)
            rows.append({"_row": len(rows) + 1, "variable": name, "store": str(store.relative_to(Path(context.arrays_root).parent)),
                         "units": target, "source_units": unit, "time_start": times.min(), "time_end": times.max(),
                         "n_time": len(times), "n_lat": int(ds.sizes["lat"]), "n_lon": int(ds.sizes["lon"]),
                         "lat_min": float(ds["lat"].min()), "lat_max": float(ds["lat"].max()),
                         "lon_min": float(ds["lon"].min()), "lon_max": float(ds["lon"].max())})
    return ReadResult(rows_read=len(rows), tables={"array_store": pd.DataFrame(rows)})
