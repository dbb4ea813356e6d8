# The seed's Flask user-service, the benchmark's comparison peer: copied as published, except
# that the secret is read from the JWT_SECRET environment variable so that gunicorn (which does
# not run the __main__ block) serves it with the same key as the user-service.
import os

from flask import Flask, request, jsonify
import jwt

app = Flask(__name__)
app.config['JWT_SECRET'] = os.environ['JWT_SECRET']

@app.route('/users/<int:user_id>', methods=['GET'])
def get_user(user_id):
    auth_header = request.headers.get('Authorization')
    if not auth_header:
        return jsonify({"error": "Authorization header missing"}), 401

    try:
        token = auth_header.split(" ")[1] # "Bearer <token>"
        decoded_token = jwt.decode(token, app.config['JWT_SECRET'], algorithms=["HS256"])
        # AuthZ: Check if the authenticated user can access this specific user's data
        if decoded_token['user_id'] != user_id and not decoded_token.get('is_admin', False):
            return jsonify({"error": "Forbidden"}), 403

        # Simulate fetching user data
        user_data = {"id": user_id, "username": f"user_{user_id}", "email": f"user{user_id}@example.com"}
        return jsonify(user_data)

    except jwt.ExpiredSignatureError:
        return jsonify({"error": "Token expired"}), 401
    except jwt.InvalidTokenError:
        return jsonify({"error": "Invalid token"}), 401
    except Exception as e:
        return jsonify({"error": str(e)}), 500

if __name__ == '__main__':
    app.run(debug=True, port=8080)
