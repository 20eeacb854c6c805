"""Each moto gap that infra/local/moto_shim.py bridges, checked on its own (all seven fail on plain moto 5.2.5)."""

from __future__ import annotations

import io
import json
import sys
import zipfile

import boto3
import pytest

from infra.local import rehearsal

SWAGGER_2 = {
    "swagger": "2.0",
    "info": {"title": "t", "version": "1"},
    "paths": {"/health": {"get": {"responses": {"200": {"description": "ok"}}}}},
}


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    """boto3 client factory for a moto_shim.py server on loopback."""
    log = tmp_path_factory.mktemp("moto-shim") / "moto.log"
    with rehearsal.moto_server(sys.executable, log) as endpoint:
        yield lambda service: boto3.client(
            service,
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


def test_put_rest_api_accepts_swagger_2(aws):
    api = aws("apigateway")
    api_id = api.create_rest_api(name="swagger2")["id"]
    api.put_rest_api(restApiId=api_id, mode="overwrite", body=json.dumps(SWAGGER_2))
    paths = {r["path"] for r in api.get_resources(restApiId=api_id)["items"]}
    assert "/health" in paths


def test_put_rest_api_imports_gateway_responses_and_overwrite_replaces_them(aws):
    api = aws("apigateway")
    api_id = api.create_rest_api(name="responses")["id"]
    api.put_gateway_response(
        restApiId=api_id, responseType="ACCESS_DENIED", responseTemplates={"application/json": "{}"}
    )
    template = '{"error":"INVALID_REQUEST","requestId":"$context.requestId"}'
    body = {
        **SWAGGER_2,
        "x-amazon-apigateway-gateway-responses": {"DEFAULT_4XX": {"responseTemplates": {"application/json": template}}},
    }
    api.put_rest_api(restApiId=api_id, mode="overwrite", body=json.dumps(body))
    responses = {r["responseType"]: r for r in api.get_gateway_responses(restApiId=api_id)["items"]}
    assert set(responses) == {"DEFAULT_4XX"}  # the separately put one is gone, as in AWS
    assert responses["DEFAULT_4XX"]["responseTemplates"] == {"application/json": template}


def test_binary_media_type_patch_takes_the_type_from_the_path(aws):
    api = aws("apigateway")
    api_id = api.create_rest_api(name="binary")["id"]
    api.update_rest_api(restApiId=api_id, patchOperations=[{"op": "add", "path": "/binaryMediaTypes/image~1png"}])
    assert api.get_rest_api(restApiId=api_id)["binaryMediaTypes"] == ["image/png"]
    api.update_rest_api(restApiId=api_id, patchOperations=[{"op": "remove", "path": "/binaryMediaTypes/image~1png"}])
    assert not api.get_rest_api(restApiId=api_id).get("binaryMediaTypes")


def test_lambda_keeps_file_system_configs(aws):
    role = aws("iam").create_role(RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    lam = aws("lambda")
    first = [
        {"Arn": "arn:aws:elasticfilesystem:us-east-1:123456789012:access-point/fsap-1", "LocalMountPath": "/mnt/efs"}
    ]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", "def handler(event, context):\n    return event\n")
    lam.create_function(
        FunctionName="fn",
        Runtime="python3.12",
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": buf.getvalue()},
        FileSystemConfigs=first,
    )
    assert lam.get_function(FunctionName="fn")["Configuration"]["FileSystemConfigs"] == first
    second = [{**first[0], "LocalMountPath": "/mnt/other"}]
    lam.update_function_configuration(FunctionName="fn", FileSystemConfigs=second)
    assert lam.get_function(FunctionName="fn")["Configuration"]["FileSystemConfigs"] == second


def test_security_group_rule_keeps_the_description_of_a_group_source(aws):
    ec2 = aws("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    a, b = (ec2.create_security_group(GroupName=n, Description=n, VpcId=vpc)["GroupId"] for n in "ab")
    ec2.authorize_security_group_ingress(
        GroupId=a,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 2049,
                "ToPort": 2049,
                "UserIdGroupPairs": [{"GroupId": b, "Description": "NFS from b"}],
            }
        ],
    )
    rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [a]}])["SecurityGroupRules"]
    assert [r.get("Description") for r in rules if not r["IsEgress"]] == ["NFS from b"]


def test_efs_file_system_policy_can_be_deleted(aws):
    efs = aws("efs")
    fs = efs.create_file_system(CreationToken="policy")["FileSystemId"]
    efs.put_file_system_policy(FileSystemId=fs, Policy=json.dumps({"Version": "2012-10-17", "Statement": []}))
    efs.delete_file_system_policy(FileSystemId=fs)
    with pytest.raises(efs.exceptions.PolicyNotFound):
        efs.describe_file_system_policy(FileSystemId=fs)


def test_aws_managed_policies_are_loaded(aws):
    arn = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
    assert aws("iam").get_policy(PolicyArn=arn)["Policy"]["PolicyName"] == "AWSLambdaVPCAccessExecutionRole"
