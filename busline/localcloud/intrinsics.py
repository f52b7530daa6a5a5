"""CloudFormation intrinsic functions, evaluated against what the local cloud has provisioned.

Values come out local: an execute-api URL of an API in this stack becomes the local gateway's URL,
so functions that build management-API or REST URLs from the template talk to the local gateways.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from busline.localcloud.model import Endpoints, ProvisionedResource, ProvisionError

DEFAULT_ACCOUNT_ID = "123456789012"
_AZ_SUFFIXES = ("a", "b", "c")


class _NoValue:
    """AWS::NoValue: the property (or list item) disappears."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()

_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_EXECUTE_API_URL = re.compile(
    r"(?P<scheme>https|wss)://(?P<api_id>[A-Za-z0-9]+)\.execute-api\.[a-z0-9-]+\.amazonaws\.com(?P<path>/[^\s\"']*)?"
)
_WEBSOCKET_API = "AWS::ApiGatewayV2::Api"
_REST_API = "AWS::ApiGateway::RestApi"


def resolve_parameters(declared: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, Any]:
    """Template Parameters + `--param` overrides -> the value Ref returns for each parameter."""
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise ProvisionError(f"parameter override {unknown[0]!r} is not declared in the template's Parameters")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        spec = spec or {}
        if name in overrides:
            raw: Any = overrides[name]
        elif "Default" in spec:
            raw = spec["Default"]
        else:
            raise ProvisionError(f"parameter {name!r} has no Default; pass it with --param {name}=VALUE")
        allowed = spec.get("AllowedValues")
        if allowed is not None and str(raw) not in [str(value) for value in allowed]:
            raise ProvisionError(f"parameter {name!r}: {raw!r} is not one of {allowed}")
        param_type = str(spec.get("Type", "String"))
        if param_type == "CommaDelimitedList" or param_type.startswith("List<"):
            values[name] = raw if isinstance(raw, list) else [item.strip() for item in str(raw).split(",")]
        else:
            values[name] = str(raw)  # CloudFormation hands Number parameters to Ref as strings too
    return values


class Resolver:
    """Evaluate intrinsic functions in template values.

    `resources` is read at call time, so the provisioner can keep adding to it while it walks the
    template in dependency order.
    """

    def __init__(
        self,
        parameters: Mapping[str, Any],
        resources: Mapping[str, ProvisionedResource],
        region: str,
        account_id: str = DEFAULT_ACCOUNT_ID,
        *,
        stack_name: str = "busline",
        conditions: Mapping[str, Any] | None = None,
        endpoints: Endpoints | None = None,
        mappings: Mapping[str, Any] | None = None,
    ) -> None:
        self.parameters = parameters
        self.resources = resources
        self.region = region
        self.account_id = account_id
        self.stack_name = stack_name
        self.condition_definitions = dict(conditions or {})
        self.endpoints = endpoints
        self.mappings = dict(mappings or {})
        self._condition_values: dict[str, bool] = {}
        self._conditions_in_progress: set[str] = set()
        self._functions: dict[str, Callable[[Any, str], Any]] = {
            "Ref": self._ref,
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::Join": self._join,
            "Fn::Select": self._select,
            "Fn::Split": self._split,
            "Fn::If": self._if,
            "Fn::GetAZs": self._get_azs,
            "Fn::Base64": self._base64,
            "Fn::ImportValue": self._import_value,
            "Fn::FindInMap": self._find_in_map,
            "Fn::Equals": self._condition_function,
            "Fn::Not": self._condition_function,
            "Fn::And": self._condition_function,
            "Fn::Or": self._condition_function,
        }

    # -- public ---------------------------------------------------------------------------------

    def pseudo_parameters(self) -> dict[str, str]:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}/local",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": "",
        }

    def resolve(self, value: Any, context: str = "") -> Any:
        """Resolve every intrinsic in `value`; `context` (e.g. the logical id) prefixes error messages."""
        if isinstance(value, dict):
            if len(value) == 1:
                (name, argument), = value.items()
                if name in self._functions:
                    return self._functions[name](argument, context)
                if name.startswith("Fn::"):
                    raise ProvisionError(f"{context or 'template'}: {name} is not supported by the local cloud")
            resolved_dict = {key: self.resolve(item, context) for key, item in value.items()}
            return {key: item for key, item in resolved_dict.items() if item is not NO_VALUE}
        if isinstance(value, list):
            resolved_list = [self.resolve(item, context) for item in value]
            return [item for item in resolved_list if item is not NO_VALUE]
        if isinstance(value, str):
            return self.localize_url(value)
        return value

    def condition(self, name: str, context: str = "") -> bool:
        if name in self._condition_values:
            return self._condition_values[name]
        if name not in self.condition_definitions:
            raise ProvisionError(f"{context or 'template'}: condition {name!r} is not defined in Conditions")
        if name in self._conditions_in_progress:
            raise ProvisionError(f"{context or 'template'}: condition {name!r} refers to itself")
        self._conditions_in_progress.add(name)
        try:
            result = self._evaluate_condition(self.condition_definitions[name], f"condition {name}")
        finally:
            self._conditions_in_progress.discard(name)
        self._condition_values[name] = result
        return result

    def localize_url(self, text: str) -> str:
        """Point execute-api URLs of this stack's APIs at the local gateways; leave other text alone."""
        if self.endpoints is None or "execute-api" not in text:
            return text
        return _EXECUTE_API_URL.sub(self._local_api_url, text)

    # -- intrinsic functions --------------------------------------------------------------------

    def _ref(self, name: Any, context: str) -> Any:
        if not isinstance(name, str):
            raise ProvisionError(f"{context}: Ref needs a name, got {name!r}")
        if name == "AWS::NoValue":
            return NO_VALUE
        pseudo = self.pseudo_parameters()
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources:
            return self.resources[name].physical_id
        raise ProvisionError(f"{context}: Ref to {name!r}, which is neither a parameter nor a provisioned resource")

    def _get_att(self, argument: Any, context: str) -> str:
        if isinstance(argument, str):
            logical_id, _, attribute = argument.partition(".")
        elif isinstance(argument, list) and len(argument) == 2:
            logical_id, attribute = argument[0], self.resolve(argument[1], context)
        else:
            raise ProvisionError(f"{context}: Fn::GetAtt needs [LogicalId, Attribute], got {argument!r}")
        return self._attribute(logical_id, str(attribute), context)

    def _attribute(self, logical_id: str, attribute: str, context: str) -> str:
        resource = self.resources.get(logical_id)
        if resource is None:
            raise ProvisionError(f"{context}: Fn::GetAtt {logical_id}.{attribute}: {logical_id!r} is not a provisioned resource")
        if attribute not in resource.attributes:
            known = ", ".join(sorted(resource.attributes)) or "none"
            raise ProvisionError(
                f"{context}: Fn::GetAtt {logical_id}.{attribute}: {resource.type} has no attribute "
                f"{attribute!r} locally (known: {known})"
            )
        return resource.attributes[attribute]

    def _sub(self, argument: Any, context: str) -> str:
        if isinstance(argument, str):
            template, variables = argument, {}
        elif isinstance(argument, list) and len(argument) == 2 and isinstance(argument[1], dict):
            template = argument[0]
            variables = {key: self.resolve(value, context) for key, value in argument[1].items()}
        else:
            raise ProvisionError(f"{context}: Fn::Sub needs a string or [string, {{variables}}], got {argument!r}")
        if not isinstance(template, str):
            raise ProvisionError(f"{context}: Fn::Sub template must be a string, got {template!r}")

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"  # ${!Literal} is an escaped, literal ${Literal}
            if name in variables:
                return _as_text(variables[name], context)
            if "." in name and not name.startswith("AWS::"):
                logical_id, _, attribute = name.partition(".")
                return self._attribute(logical_id, attribute, context)
            return _as_text(self._ref(name, context), context)

        return self.localize_url(_SUB_VARIABLE.sub(substitute, template))

    def _join(self, argument: Any, context: str) -> str:
        if not (isinstance(argument, list) and len(argument) == 2):
            raise ProvisionError(f"{context}: Fn::Join needs [delimiter, [values]], got {argument!r}")
        delimiter = self.resolve(argument[0], context)
        values = self.resolve(argument[1], context)
        if not isinstance(values, list):
            raise ProvisionError(f"{context}: Fn::Join values must be a list, got {values!r}")
        return self.localize_url(str(delimiter).join(_as_text(value, context) for value in values))

    def _select(self, argument: Any, context: str) -> Any:
        if not (isinstance(argument, list) and len(argument) == 2):
            raise ProvisionError(f"{context}: Fn::Select needs [index, [values]], got {argument!r}")
        index = self.resolve(argument[0], context)
        values = self.resolve(argument[1], context)
        try:
            position = int(index)
        except (TypeError, ValueError):
            raise ProvisionError(f"{context}: Fn::Select index {index!r} is not a number") from None
        if not isinstance(values, list) or not 0 <= position < len(values):
            raise ProvisionError(f"{context}: Fn::Select index {position} is out of range for {values!r}")
        return values[position]

    def _split(self, argument: Any, context: str) -> list[str]:
        if not (isinstance(argument, list) and len(argument) == 2):
            raise ProvisionError(f"{context}: Fn::Split needs [delimiter, string], got {argument!r}")
        delimiter = self.resolve(argument[0], context)
        text = self.resolve(argument[1], context)
        if not isinstance(delimiter, str) or not isinstance(text, str):
            raise ProvisionError(f"{context}: Fn::Split needs a string delimiter and string, got {argument!r}")
        return text.split(delimiter)

    def _if(self, argument: Any, context: str) -> Any:
        if not (isinstance(argument, list) and len(argument) == 3 and isinstance(argument[0], str)):
            raise ProvisionError(f"{context}: Fn::If needs [ConditionName, valueIfTrue, valueIfFalse], got {argument!r}")
        branch = argument[1] if self.condition(argument[0], context) else argument[2]
        return self.resolve(branch, context)

    def _get_azs(self, argument: Any, context: str) -> list[str]:
        region = self.resolve(argument, context) or self.region
        return [f"{region}{suffix}" for suffix in _AZ_SUFFIXES]

    def _base64(self, argument: Any, context: str) -> str:
        return base64.b64encode(_as_text(self.resolve(argument, context), context).encode()).decode()

    def _import_value(self, argument: Any, context: str) -> Any:
        raise ProvisionError(
            f"{context}: Fn::ImportValue {argument!r} needs another stack's exports, which the local cloud does "
            "not have; pass the value as a parameter instead"
        )

    def _find_in_map(self, argument: Any, context: str) -> Any:
        if not (isinstance(argument, list) and len(argument) == 3):
            raise ProvisionError(f"{context}: Fn::FindInMap needs [MapName, TopKey, SecondKey], got {argument!r}")
        map_name, top_key, second_key = (self.resolve(item, context) for item in argument)
        try:
            return self.mappings[map_name][top_key][second_key]
        except (KeyError, TypeError):
            raise ProvisionError(f"{context}: Fn::FindInMap {map_name}/{top_key}/{second_key} is not in Mappings") from None

    def _condition_function(self, argument: Any, context: str) -> bool:
        raise ProvisionError(f"{context}: condition functions belong in Conditions or Fn::If, got {argument!r}")

    # -- conditions -----------------------------------------------------------------------------

    def _evaluate_condition(self, expression: Any, context: str) -> bool:
        if not (isinstance(expression, dict) and len(expression) == 1):
            raise ProvisionError(f"{context}: a condition must be one Fn::Equals/Not/And/Or/Condition, got {expression!r}")
        (name, argument), = expression.items()
        if name == "Condition":
            return self.condition(str(argument), context)
        if name == "Fn::Equals":
            if not (isinstance(argument, list) and len(argument) == 2):
                raise ProvisionError(f"{context}: Fn::Equals needs two values, got {argument!r}")
            left, right = (self.resolve(item, context) for item in argument)
            return _as_comparable(left) == _as_comparable(right)
        if not isinstance(argument, list):
            raise ProvisionError(f"{context}: {name} needs a list of conditions, got {argument!r}")
        if name == "Fn::Not":
            if len(argument) != 1:
                raise ProvisionError(f"{context}: Fn::Not needs exactly one condition, got {argument!r}")
            return not self._evaluate_condition(argument[0], context)
        if name == "Fn::And":
            return all(self._evaluate_condition(item, context) for item in argument)
        if name == "Fn::Or":
            return any(self._evaluate_condition(item, context) for item in argument)
        raise ProvisionError(f"{context}: {name} is not a condition function")

    # -- URLs -----------------------------------------------------------------------------------

    def _local_api_url(self, match: re.Match[str]) -> str:
        assert self.endpoints is not None
        api = next(
            (
                resource
                for resource in self.resources.values()
                if resource.physical_id == match.group("api_id") and resource.type in (_WEBSOCKET_API, _REST_API)
            ),
            None,
        )
        if api is None:
            return match.group(0)  # an API outside this stack: leave the real URL
        path = match.group("path") or ""
        if api.type == _REST_API:
            return f"{self.endpoints.rest}{path}"
        local_endpoint = api.attributes.get("ApiEndpoint", "")
        if local_endpoint.startswith("http"):  # an HTTP API: served by the REST gateway under its id
            return f"{local_endpoint}{path}"
        if match.group("scheme") == "wss":
            return f"{self.endpoints.websocket}{path}"  # what clients connect to
        return f"{self.endpoints.management}{path}"  # https URL of a WebSocket API = @connections API


def _as_text(value: Any, context: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, list | dict):
        raise ProvisionError(f"{context}: cannot put {json.dumps(value)} into a string")
    raise ProvisionError(f"{context}: cannot put {value!r} into a string")


def _as_comparable(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value
