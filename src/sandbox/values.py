# Values as data: how the driver (driver.py, which this file is prepended to) turns a cell's
# last expression, and each object given to `display()`, into JSON a program can read, beside
# the plain text a notebook would print. The forms are documented in the README ("Values").
#
# - Plain JSON (None, bool, 64-bit int, finite float, str, and lists / str-keyed dicts of
#   them) is itself, exactly as before this file existed.
# - Other values that have a lossless-where-possible JSON form become an object with a
#   "type": tuple, set, frozenset, dict (non-str keys, as [key, value] pairs), bytes
#   (base64), int (beyond 64 bits, decimal digits), complex, decimal, fraction, datetime,
#   date, time, timedelta (seconds), ndarray (dtype, shape, data: nested lists, a preview
#   when large), dataframe (split orientation: columns, index, data rows, dtypes; a Series
#   is a one-column frame with "series": true), index.
# - Non-finite floats are the strings "nan", "inf" and "-inf" (as the repr the API has
#   always returned for them), except in a table, where what pandas counts as missing
#   (None, NaN, NaT, NA) is null, as in pandas' own to_json().
# - Anything else: at the top level its repr() as a JSON string (as before); inside a
#   container {"type": "repr", "value_type": ..., "data": repr}.
#
# Everything here runs in the guest, inside the run's own limits: a hostile __repr__,
# __len__ or __array__ can make a conversion fail (it falls back to repr) or stop the run at
# its time limit, never hang or crash the host. Conversions have a byte budget, so a
# ten-million-element list is not converted only to be thrown away.

def _omcp_values(quote):
    import builtins
    import sys
    from binascii import b2a_base64

    (all, bool, bytearray, bytes, complex, dict, float, frozenset, hex, int, isinstance,
     len, list, max, min, repr, slice, sorted, str, tuple, type, zip) = (
        builtins.all, builtins.bool, builtins.bytearray, builtins.bytes, builtins.complex,
        builtins.dict, builtins.float, builtins.frozenset, builtins.hex, builtins.int,
        builtins.isinstance, builtins.len, builtins.list, builtins.max, builtins.min,
        builtins.repr, builtins.slice, builtins.sorted, builtins.str, builtins.tuple,
        builtins.type, builtins.zip)
    (BaseException, Exception, RecursionError, TypeError, ValueError) = (
        builtins.BaseException, builtins.Exception, builtins.RecursionError,
        builtins.TypeError, builtins.ValueError)
    modules = sys.modules
    INF, NINF = float("inf"), float("-inf")

    # The largest previews (items, edge, rows, columns): an ndarray's data holds at most
    # `items` elements and at most `edge` along one axis; a table at most `rows` rows of
    # `columns` columns.
    # When a value's JSON does not fit the run's result budget, it is tried again with the
    # smaller previews, and then given up for its repr.
    PREVIEWS = ((1000, 1000, 100, 50), (100, 100, 20, 20), (10, 10, 5, 5))
    MAX_DEPTH = 64

    class Cut(Exception):
        # Over the byte budget, or nested too deep: give up this form.
        pass

    class NoForm(Exception):
        # No JSON form for this type: the caller falls back to repr.
        pass

    state = {"room": 0, "preview": PREVIEWS[0]}

    def spend(n):
        state["room"] -= n
        if state["room"] < 0:
            raise Cut

    def type_name(value):
        # "int", "numpy.float64", "pandas.DataFrame", "datetime.date", "__main__.P".
        try:
            kind = type(value)
            module = type.__getattribute__(kind, "__module__")
            name = type.__getattribute__(kind, "__qualname__")
            if type(module) is not str or type(name) is not str:
                return "?"
            if module == "builtins":
                return name
            top = module.partition(".")[0]
            if top in ("pandas", "numpy"):
                module = top
            return module + "." + name
        except BaseException:
            return "?"

    def short_name(value):
        try:
            name = type.__getattribute__(type(value), "__name__")
            return name if type(name) is str else "?"
        except BaseException:
            return "?"

    def number(x):
        # An exact float: itself, or the API's words for the non-finite ones.
        if x != x:
            return "nan"
        if x == INF:
            return "inf"
        if x == NINF:
            return "-inf"
        return x

    def whole(n):
        # An exact int: itself within 64 bits (what every JSON reader keeps exactly).
        if -(2**63) <= n < 2**64:
            return n
        try:
            spend(n.bit_length() // 3)
            return {"type": "int", "data": int.__repr__(n)}
        except ValueError:
            # More digits than str() allows (sys.get_int_max_str_digits): hex has no limit.
            return {"type": "int", "hex": hex(n)}

    def text(s):
        # An exact str; lone surrogates are valid Python but not valid JSON text.
        spend(len(s) + 2)
        s.encode("utf-8")
        return s

    def fallback(value):
        # Inside a container: what cannot be converted is named, with its repr.
        try:
            shown = repr(value)
            if type(shown) is not str:
                raise TypeError
            spend(len(shown))
            shown.encode("utf-8")
        except Cut:
            raise
        except BaseException as exc:
            shown = "<unrepresentable %s: %s>" % (short_name(value), short_name(exc))
        return {"type": "repr", "value_type": type_name(value), "data": shown}

    def convert(value, depth):
        # JSON-ready data (None, bool, int, float, str, list, dict with str keys) for
        # `value`, or NoForm / Cut.
        spend(4)
        kind = type(value)
        if value is None or kind is bool:
            return value
        if kind is int:
            return whole(value)
        if kind is float:
            return number(value)
        if kind is str:
            return text(value)
        # `depth` is how deeply nested in JSON this value is: the host's JSON reader stops
        # at 128 levels, and a form nests its items one to three levels down.
        if depth > MAX_DEPTH:
            raise Cut
        if kind is list:
            return [inner(item, depth + 1) for item in value]
        if kind is dict:
            items = list(value.items())
            if all(type(key) is str for key, _ in items):
                return {text(key): inner(item, depth + 1) for key, item in items}
            return {"type": "dict", "data": [[inner(key, depth + 3), inner(item, depth + 3)]
                                             for key, item in items]}
        if kind is tuple:
            return {"type": "tuple", "data": [inner(item, depth + 2) for item in value]}
        if kind is set or kind is frozenset:
            items = list(value)
            try:
                items = sorted(items)
            except BaseException:
                pass
            return {"type": kind.__name__, "data": [inner(item, depth + 2) for item in items]}
        if kind is bytes or kind is bytearray:
            spend(len(value) * 4 // 3)
            return {"type": kind.__name__,
                    "data": b2a_base64(value, newline=False).decode("ascii")}
        if kind is complex:
            return {"type": "complex", "real": number(value.real), "imag": number(value.imag)}
        numpy = modules.get("numpy")
        if numpy is not None:
            if isinstance(value, numpy.generic):
                return np_scalar(value, numpy, depth)
            if isinstance(value, numpy.ndarray):
                return np_array(value, numpy, depth)
        pandas = modules.get("pandas")
        if pandas is not None:
            if isinstance(value, pandas.DataFrame):
                return table(value, pandas, depth, series=False)
            if isinstance(value, pandas.Series):
                return table(value.to_frame(), pandas, depth, series=True)
            if isinstance(value, pandas.Index):
                return pd_index(value, pandas, depth)
            if value is pandas.NaT or value is pandas.NA:
                return None
        datetime = modules.get("datetime")
        if datetime is not None:
            # datetime before date: a datetime is a date too. pandas' Timestamp and
            # Timedelta are subclasses and keep their nanoseconds in isoformat().
            if isinstance(value, datetime.datetime):
                return {"type": "datetime", "data": text(value.isoformat())}
            if isinstance(value, datetime.date):
                return {"type": "date", "data": text(value.isoformat())}
            if isinstance(value, datetime.time):
                return {"type": "time", "data": text(value.isoformat())}
            if isinstance(value, datetime.timedelta):
                return {"type": "timedelta", "seconds": number(float(value.total_seconds()))}
        decimal = modules.get("decimal")
        if decimal is not None and isinstance(value, decimal.Decimal):
            return {"type": "decimal", "data": text(str(value))}
        fractions = modules.get("fractions")
        if fractions is not None and isinstance(value, fractions.Fraction):
            return {"type": "fraction", "numerator": whole(int(value.numerator)),
                    "denominator": whole(int(value.denominator))}
        raise NoForm

    def inner(value, depth):
        # An item of a container: what has no form, or whose conversion fails, is shown
        # by its repr; only the budget gives up the whole value.
        try:
            return convert(value, depth)
        except Cut:
            raise
        except RecursionError:
            raise Cut
        except BaseException:
            return fallback(value)

    def np_scalar(value, numpy, depth):
        # Dates and durations first: numpy's timedelta64 is an integer type too.
        if isinstance(value, numpy.datetime64):
            if numpy.isnat(value):
                return None
            return {"type": "datetime", "data": text(str(numpy.datetime_as_string(value)))}
        if isinstance(value, numpy.timedelta64):
            if numpy.isnat(value):
                return None
            return {"type": "timedelta",
                    "seconds": number(float(value / numpy.timedelta64(1, "s")))}
        if isinstance(value, numpy.bool_):
            return bool(value)
        if isinstance(value, numpy.integer):
            return whole(int(value))
        if isinstance(value, numpy.floating):
            return number(float(value))
        if isinstance(value, numpy.complexfloating):
            return {"type": "complex", "real": number(float(value.real)),
                    "imag": number(float(value.imag))}
        if isinstance(value, numpy.str_):
            return text(str(value))
        if isinstance(value, numpy.bytes_):
            return convert(bytes(value), depth)
        return convert(value.item(), depth)

    def flat(array, numpy):
        # Python data for a (small) array: dates as ISO strings, durations as seconds,
        # missing ones as None.
        kind = array.dtype.kind
        if kind == "M":
            missing = numpy.isnat(array).tolist()
            strings = numpy.datetime_as_string(array).tolist()
            return mask(strings, missing)
        if kind == "m":
            missing = numpy.isnat(array).tolist()
            seconds = (array / numpy.timedelta64(1, "s")).tolist()
            return mask(seconds, missing)
        return array.tolist()

    def mask(values, missing):
        if type(values) is list:
            return [mask(v, m) for v, m in zip(values, missing)]
        return None if missing else values

    def np_array(value, numpy, depth):
        array = numpy.asarray(value)
        if array.ndim == 0:
            return convert(array[()], depth)
        shape = [int(n) for n in array.shape]
        items, edge = state["preview"][0], state["preview"][1]
        caps = [min(n, edge) for n in shape]
        # Shrink the longest edge until the preview holds at most `items` elements.
        while product(caps) > items:
            longest = caps.index(max(caps))
            caps[longest] = max(1, caps[longest] // 2)
        truncated = caps != shape
        preview = array[tuple(slice(0, c) for c in caps)] if truncated else array
        spend(product(caps) * 2)
        data = inner(flat(preview, numpy), depth + 1)
        form = {"type": "ndarray", "dtype": str(array.dtype), "shape": shape, "data": data,
                "truncated": truncated}
        if truncated:
            form["preview_shape"] = caps
        return form

    def product(numbers):
        total = 1
        for n in numbers:
            total *= n
        return total

    def cell(value, pandas, depth):
        # One entry of a table, its index or its columns: timestamps as ISO 8601 strings,
        # durations as ISO 8601 durations, periods and intervals as their text, and what
        # pandas counts as missing (None, NaN, NaT, NA) as null, as its to_json() does.
        if value is None or value is pandas.NaT or value is pandas.NA:
            return None
        if type(value) is float or isinstance(value, modules["numpy"].floating):
            if value != value:
                return None
        if isinstance(value, pandas.Timestamp):
            return text(value.isoformat())
        if isinstance(value, pandas.Timedelta):
            return text(value.isoformat())
        if isinstance(value, (pandas.Period, pandas.Interval)):
            return text(str(value))
        datetime = modules.get("datetime")
        if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
            return text(value.isoformat())
        if type(value) is tuple:
            # A MultiIndex label.
            return [cell(part, pandas, depth + 1) for part in value]
        return inner(value, depth)

    def labels(index, count, pandas, depth):
        return [cell(label, pandas, depth) for label in index[:count].tolist()]

    def table(frame, pandas, depth, series):
        rows, columns = (int(n) for n in frame.shape)
        max_rows, max_columns = state["preview"][2], state["preview"][3]
        r, c = min(rows, max_rows), min(columns, max_columns)
        part = frame.iloc[:r, :c]
        spend(r * c * 2)
        data = [[cell(item, pandas, depth + 3) for item in row]
                for row in part.itertuples(index=False, name=None)]
        form = {
            "type": "dataframe",
            "columns": labels(frame.columns, c, pandas, depth + 2),
            "index": labels(frame.index, r, pandas, depth + 2),
            "data": data,
            "dtypes": [str(dtype) for dtype in part.dtypes.tolist()],
            "index_names": [cell(name, pandas, depth + 2) for name in frame.index.names],
            "shape": [rows, columns],
            "truncated": r < rows or c < columns,
        }
        if series:
            form["series"] = True
        return form

    def pd_index(index, pandas, depth):
        length = int(len(index))
        shown = min(length, state["preview"][0])
        spend(shown * 2)
        return {
            "type": "index",
            "dtype": str(index.dtype),
            "names": [cell(name, pandas, depth + 2) for name in index.names],
            "length": length,
            "data": labels(index, shown, pandas, depth + 2),
            "truncated": shown < length,
        }

    def to_json(data):
        # `data` is what `convert` made: only JSON types, finite floats, UTF-8-clean str.
        kind = type(data)
        if data is None:
            return "null"
        if kind is bool:
            return "true" if data else "false"
        if kind is str:
            return quote(data)
        if kind is int:
            return int.__repr__(data)
        if kind is float:
            return float.__repr__(data)
        if kind is list:
            return "[" + ", ".join([to_json(item) for item in data]) + "]"
        return "{" + ", ".join([quote(k) + ": " + to_json(v) for k, v in data.items()]) + "}"

    def encode(value, room):
        # The value's JSON text within `room` bytes, or None (the caller shows its repr).
        # The second item says the data is a preview cut smaller to fit.
        for level, preview in enumerate(PREVIEWS):
            state["room"], state["preview"] = room, preview
            try:
                data = convert(value, 0)
                encoded = to_json(data)
            except Cut:
                continue
            except BaseException:
                return None, False
            if len(encoded) <= room:
                return encoded, level > 0
        return None, False

    def shown(value, room):
        # What a notebook prints: repr(), whatever it raises or returns; cut at `room`.
        try:
            text_ = repr(value)
            if type(text_) is not str:
                raise TypeError("__repr__ returned %s" % type_name(text_))
        except BaseException as exc:
            return "<unrepresentable %s: %s>" % (short_name(value), short_name(exc)), False
        if len(text_) > room:
            return text_[:room] + "\n[... truncated]", True
        return text_, False

    return encode, shown, type_name


